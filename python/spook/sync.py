"""The synchronous facade, for scripts and notebooks: the same calls as ``spook`` without
``await``. Calls run on one background asyncio loop (a daemon thread started on first use);
the calling thread waits with the GIL released.

    >>> import spook.sync as spook              # doctest: +SKIP
    >>> c = spook.embedded(ledger="/tmp/n.spookdb")
    >>> invite = c.create_group("notes", schema=spook.schema({"text": "str"}))
    >>> notes = c.group("notes")
    >>> notes.set("n1", "text", "hello")
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

import spook as _a
from . import agents as _agents
from . import _spook as _x
from ._spook import AuctionResult, BarrierOutcome, Choice, Claim, GroupStatus, Posted
from spook import Event, Outcome, get_model as _get_model, node_toml, schema
# The same outcome, event and exception classes as the async API, so that
# `import spook.sync as spook` reads like `import spook`.
from ._spook import (  # noqa: F401
    Aborted,
    Change,
    Committed,
    Decohered,
    FrontierMoved,
    Lagged,
    MemberDecohered,
    MembershipChanged,
    Pending,
    ReEntangled,
)
from .errors import (  # noqa: F401
    SpookError,
    NotFound,
    BadValue,
    NotAllowed,
    StorageUnavailable,
    Refused,
    NodeLost,
    Unreachable,
    AttachFailed,
    ProtocolError,
    ConfigError,
    StartFailed,
    PatternRefused,
    Held,
    NotHolder,
    Missing,
    Exists,
    NotOpen,
    WindowClosed,
    StillOpen,
    Outbid,
    Taken,
    NotOwner,
    NotSealed,
    OutcomeUnknown,
)

__all__ = [
    "Client", "Group", "Tx", "Watch", "embedded", "local", "remote", "schema", "node_toml",
    "Claims", "Auctions", "SealedAuctions", "Blackboard", "Barrier", "Formation", "Event", "Outcome",
    "Aborted",
    "Change",
    "Committed",
    "Decohered",
    "FrontierMoved",
    "GroupStatus",
    "Lagged",
    "MemberDecohered",
    "MembershipChanged",
    "Pending",
    "ReEntangled",
    "SpookError",
    "NotFound",
    "BadValue",
    "NotAllowed",
    "StorageUnavailable",
    "Refused",
    "NodeLost",
    "Unreachable",
    "AttachFailed",
    "ProtocolError",
    "ConfigError",
    "StartFailed",
    "PatternRefused",
    "Held",
    "NotHolder",
    "Missing",
    "Exists",
    "NotOpen",
    "WindowClosed",
    "StillOpen",
    "Outbid",
    "Taken",
    "NotOwner",
    "NotSealed",
    "OutcomeUnknown",
]

T = TypeVar("T")
Register = Union[int, str]

_loop: Optional[asyncio.AbstractEventLoop] = None
_lock = threading.Lock()


def _the_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="spook-sync", daemon=True).start()
            _loop = loop
        return _loop


def _run(make: Callable[[], Awaitable[T]], timeout: Optional[float] = None) -> T:
    """Create the awaitable on the loop (the extension's awaitables need a running loop) and
    wait for its result."""

    async def go() -> T:
        return await make()

    return asyncio.run_coroutine_threadsafe(go(), _the_loop()).result(timeout)


class Watch:
    """A watch: ``for event in watch``; ``next(timeout=...)`` for one event or None."""

    def __init__(self, inner: _x.Watch) -> None:
        self._w = inner

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        try:
            return _run(lambda: self._w.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def next(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event, or None if none came within ``timeout`` seconds (or the watch ended)."""
        fut = asyncio.run_coroutine_threadsafe(_await(lambda: self._w.__anext__()), _the_loop())
        try:
            return fut.result(timeout)
        except StopAsyncIteration:
            return None
        except concurrent.futures.TimeoutError:  # not the built-in TimeoutError before 3.11
            fut.cancel()
            return None

    def close(self) -> None:
        _run(lambda: self._w.close())


async def _await(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


class Tx:
    """A transaction being built; ``submit()`` answers its outcome."""

    def __init__(self, inner: _x.Tx) -> None:
        self._t = inner

    def when_equals(self, register: Register, field: str, value: Any) -> "Tx":
        self._t.when_equals(register, field, value)
        return self

    def when_absent(self, register: Register, field: str) -> "Tx":
        self._t.when_absent(register, field)
        return self

    def when_version(self, register: Register, field: str, version: int) -> "Tx":
        self._t.when_version(register, field, version)
        return self

    def when_lease_expired(self, register: Register, field: str) -> "Tx":
        self._t.when_lease_expired(register, field)
        return self

    def when_lease_held(self, register: Register, field: str) -> "Tx":
        self._t.when_lease_held(register, field)
        return self

    def when_compare(self, register: Register, field: str, op: str, value: Any) -> "Tx":
        self._t.when_compare(register, field, op, value)
        return self

    def set(self, register: Register, field: str, value: Any) -> "Tx":
        self._t.set(register, field, value)
        return self

    def lease_ms(self, ms: int) -> "Tx":
        self._t.lease_ms(ms)
        return self

    def deadline_ms(self, ms: int) -> "Tx":
        self._t.deadline_ms(ms)
        return self

    def after(self, seq: int) -> "Tx":
        self._t.after(seq)
        return self

    def seq(self, seq: int) -> "Tx":
        self._t.seq(seq)
        return self

    def no_wait(self) -> "Tx":
        self._t.no_wait()
        return self

    def submit(self) -> Outcome:
        return _run(lambda: self._t.submit())


class Group:
    """One group; see ``spook.Group`` for each call."""

    def __init__(self, inner: _x.Group) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    def __repr__(self) -> str:
        return repr(self.inner)

    def get(self, register: Register, view: str = "pending") -> Dict[str, Any]:
        return _run(lambda: self.inner.get(register, view))

    def get_field(self, register: Register, field: str, view: str = "pending") -> Any:
        return _run(lambda: self.inner.get_field(register, field, view))

    def get_model(self, register: Register, model: type, view: str = "pending") -> Any:
        return _run(lambda: _get_model(self.inner, register, model, view))

    def set(self, register: Register, field: str, value: Any) -> int:
        return _run(lambda: self.inner.set(register, field, value))

    def write(self, register: Register, fields: Any) -> int:
        return _run(lambda: self.inner.write(register, fields))

    def write_many(self, writes: Sequence[Tuple[Register, str, Any]]) -> int:
        return _run(lambda: self.inner.write_many(list(writes)))

    def tx(self) -> Tx:
        return Tx(self.inner.tx())

    def outcome(self, seq: int) -> Optional[Outcome]:
        return _run(lambda: self.inner.outcome(seq))

    def members(self) -> List[str]:
        return _run(lambda: self.inner.members())

    def status(self) -> GroupStatus:
        return _run(lambda: self.inner.status())

    def register_id(self, register: Register) -> int:
        return _run(lambda: self.inner.register_id(register))

    def watch(self, view: str = "pending", snapshot: bool = False, registers: Optional[Sequence[Register]] = None) -> Watch:
        return Watch(_run(lambda: self.inner.watch(view, snapshot, list(registers) if registers is not None else None)))


class Client:
    """A client of a domain; open one with ``embedded``, ``local`` or ``remote``."""

    def __init__(self, inner: _x.Client) -> None:
        self.inner = inner

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return repr(self.inner)

    @property
    def mode(self) -> str:
        return self.inner.mode

    @property
    def session_id(self) -> str:
        return self.inner.session_id

    def group(self, name: str) -> Group:
        return Group(self.inner.group(name))

    def node_id(self) -> str:
        return _run(lambda: self.inner.node_id())

    def groups(self) -> List[str]:
        return _run(lambda: self.inner.groups())

    def allow(self, peer: str, name: str = "") -> None:
        _run(lambda: self.inner.allow(peer, name))

    def create_group(self, name: str, members: Sequence[str] = (), kind: str = "convergent", schema: Optional[str] = None) -> str:
        return _run(lambda: self.inner.create_group(name, list(members), kind, schema))

    def open_group(self, name: str, kind: str = "convergent", schema: Optional[str] = None) -> Group:
        return Group(_run(lambda: self.inner.open_group(name, kind, schema)))

    def join_group(self, invite: str, name: Optional[str] = None) -> str:
        return _run(lambda: self.inner.join_group(invite, name))

    def domain_key(self) -> str:
        return _run(lambda: self.inner.domain_key())

    def set_domain_key(self, token: str) -> None:
        _run(lambda: self.inner.set_domain_key(token))

    def close(self) -> None:
        _run(lambda: self.inner.close())


def embedded(config: Optional[str] = None, **node: Any) -> Client:
    """``spook.embedded``, synchronously."""
    return Client(_run(lambda: _a.embedded(config, **node)))


def local(path: str = "spookd.sock") -> Client:
    """``spook.local``, synchronously."""
    return Client(_run(lambda: _a.local(path)))


def remote(key_file: str, domain: str, nodes: Sequence[str], connect: Sequence[str], domain_key: Optional[str] = None, timeout_s: float = 10.0) -> Client:
    """``spook.remote``, synchronously."""
    return Client(_run(lambda: _a.remote(key_file, domain, nodes, connect, domain_key, timeout_s)))


class Claims:
    """``spook.agents.Claims``, synchronously."""

    def __init__(self, group: Group, field: str = "owner", *, posted_in: Optional[str] = None, lease_ms: int = 10_000, deadline_ms: int = 5_000) -> None:
        self._c = _agents.Claims(group.inner, field, posted_in=posted_in, lease_ms=lease_ms, deadline_ms=deadline_ms)

    def claim(self, task: Register) -> Claim:
        return _run(lambda: self._c.claim(task))

    def renew(self, claim: Claim) -> Claim:
        return _run(lambda: self._c.renew(claim))

    def release(self, claim: Claim) -> None:
        _run(lambda: self._c.release(claim))


class Auctions:
    """``spook.agents.Auctions``, synchronously."""

    def __init__(self, group: Group, *, deadline_ms: int = 5_000) -> None:
        self._a = _agents.Auctions(group.inner, deadline_ms=deadline_ms)

    def open(self, auction: Register, bidding_ms: int, *, rule: str = "highest", reserve: float = 0.0) -> int:
        return _run(lambda: self._a.open(auction, bidding_ms, rule=rule, reserve=reserve))

    def bid(self, auction: Register, amount: float) -> int:
        return _run(lambda: self._a.bid(auction, amount))

    def result(self, auction: Register) -> AuctionResult:
        return _run(lambda: self._a.result(auction))


class SealedAuctions:
    """``spook.agents.SealedAuctions``, synchronously."""

    def __init__(self, group: Group) -> None:
        self._a = _agents.SealedAuctions(group.inner)

    def open(self, auction: Register, sealing_ms: int, reveal_ms: int, *, rule: str = "highest", reserve: float = 0.0) -> int:
        return _run(lambda: self._a.open(auction, sealing_ms, reveal_ms, rule=rule, reserve=reserve))

    def seal(self, auction: Register, amount: float, nonce: int) -> int:
        return _run(lambda: self._a.seal(auction, amount, nonce))

    def reveal(self, auction: Register, amount: float, nonce: int) -> int:
        return _run(lambda: self._a.reveal(auction, amount, nonce))

    def result(self, auction: Register) -> AuctionResult:
        return _run(lambda: self._a.result(auction))


class Blackboard:
    """``spook.agents.Blackboard``, synchronously (watch with the async API)."""

    def __init__(self, group: Group) -> None:
        self._b = _agents.Blackboard(group.inner)

    def post(self, key: Register, entry: Any) -> int:
        return _run(lambda: self._b.post(key, entry))

    def update(self, key: Register, entry: Any) -> int:
        return _run(lambda: self._b.update(key, entry))

    def remove(self, key: Register) -> int:
        return _run(lambda: self._b.remove(key))

    def read(self, key: Register) -> Optional[Posted]:
        return _run(lambda: self._b.read(key))


class Barrier:
    """``spook.agents.Barrier``, synchronously."""

    def __init__(self, group: Group, register: Register, *, deadline_ms: int = 5_000) -> None:
        self._b = _agents.Barrier(group.inner, register, deadline_ms=deadline_ms)

    def open(self, parties: int, wait_ms: int) -> int:
        return _run(lambda: self._b.open(parties, wait_ms))

    def arrive(self) -> None:
        _run(lambda: self._b.arrive())

    def wait(self) -> BarrierOutcome:
        return _run(lambda: self._b.wait())


class Formation:
    """``spook.agents.Formation``, synchronously."""

    def __init__(self, group: Group, member: str, *, name: Optional[str] = None) -> None:
        self._f = _agents.Formation(group.inner, member, name=name)

    def propose(self, goal: str) -> int:
        return _run(lambda: self._f.propose(goal))

    def choose(self) -> Optional[Choice]:
        return _run(lambda: self._f.choose())

