"""Spook for Python: shared world-model registers for robot fleets and AI agents.

Asyncio first::

    import asyncio, spook

    async def main():
        client = await spook.embedded(ledger="agent.spookdb")
        await client.create_group("notes", schema=spook.schema({"text": "str"}))
        notes = client.group("notes")
        await notes.set("n1", "text", "hello")
        print(await notes.get("n1"))
        await client.close()

    asyncio.run(main())

The three ways in are ``embedded`` (a node in this process), ``local`` (a ``spookd`` on this
machine) and ``remote`` (nodes over zenoh, with failover). ``spook.sync`` has the same API
for scripts and notebooks; ``spook.agents`` the coordination patterns. Everything goes
through the Rust ``spook-client``: this package holds no protocol of its own.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Optional, Sequence, Tuple, Type, TypeVar, Union

from . import errors
from ._spook import (
    Aborted,
    Change,
    Client,
    Committed,
    Decohered,
    FrontierMoved,
    Group,
    GroupStatus,
    Lagged,
    MemberDecohered,
    MembershipChanged,
    Pending,
    ReEntangled,
    Tx,
    Watch,
    __version__,
    log_to_stderr,
)
from .errors import (  # the exception classes, at the top level too
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
    "Aborted", "Change", "Client", "Committed", "Decohered", "FrontierMoved", "Group",
    "GroupStatus", "Lagged", "MemberDecohered", "MembershipChanged", "Pending", "ReEntangled",
    "Tx", "Watch", "__version__", "log_to_stderr", "embedded", "local", "remote", "schema",
    "node_toml", "get_model", "Outcome", "Event", "errors",
    "SpookError", "NotFound", "BadValue", "NotAllowed", "StorageUnavailable", "Refused", "NodeLost", "Unreachable", "AttachFailed", "ProtocolError", "ConfigError", "StartFailed", "PatternRefused", "Held", "NotHolder", "Missing", "Exists", "NotOpen", "WindowClosed", "StillOpen", "Outbid", "Taken", "NotOwner", "NotSealed", "OutcomeUnknown",
]

#: What ``Tx.submit()`` resolves to.
Outcome = Union[Committed, Aborted, Decohered, Pending]
#: What a watch yields.
Event = Union[Change, Lagged, FrontierMoved, MemberDecohered, ReEntangled, MembershipChanged]

_KINDS = ("any", "bool", "i64", "f64", "str", "bytes", "vec3", "quat", "pose")
_MERGES = ("last-writer-wins", "max", "min", "counter", "set", "log")


def _toml_str(s: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(s)


def schema(
    fields: Mapping[str, Union[str, Tuple[str, str]]],
    registers: Optional[Mapping[str, int]] = None,
    version: int = 0,
) -> str:
    """A group schema in the TOML form ``create_group`` takes.

    ``fields`` maps each field name to its kind (``any bool i64 f64 str bytes vec3 quat
    pose``) or to ``(kind, merge)`` with merge one of ``last-writer-wins max min counter set
    log``; the order of the mapping is the fields' order on the wire. ``registers`` pins names
    to ids.

    >>> print(schema({"text": "str", "seen": ("i64", "counter")}).splitlines()[1])
    [[field]]
    """
    lines = [f"version = {int(version)}"]
    for name, spec in fields.items():
        kind, merge = (spec, "last-writer-wins") if isinstance(spec, str) else spec
        if kind not in _KINDS:
            raise errors.BadValue(f"field {name!r}: kind {kind!r} is not one of {', '.join(_KINDS)}")
        if merge not in _MERGES:
            raise errors.BadValue(f"field {name!r}: merge {merge!r} is not one of {', '.join(_MERGES)}")
        lines += ["[[field]]", f"name = {_toml_str(name)}", f"kind = {_toml_str(kind)}", f"merge = {_toml_str(merge)}"]
    if registers:
        lines.append("[registers]")
        lines += [f"{_toml_str(n)} = {int(i)}" for n, i in registers.items()]
    return "\n".join(lines) + "\n"


def node_toml(
    ledger: str = "spook.spookdb",
    *,
    domain: str = "default",
    listen: Sequence[str] = ("tcp/127.0.0.1:0",),
    connect: Sequence[str] = (),
    metrics: str = "",
    log: str = "info",
    timing: Optional[Mapping[str, int]] = None,
) -> str:
    """The configuration of a node (as ``spookd.toml``) from keyword arguments; ``metrics``
    is the Prometheus endpoint's ``host:port`` (empty: none)."""
    q = _toml_str
    out = [
        "[node]", f"ledger = {q(str(ledger))}", f"domain = {q(domain)}", f"log = {q(log)}",
        "[zenoh]", f"listen = [{', '.join(q(x) for x in listen)}]", f"connect = [{', '.join(q(x) for x in connect)}]",
        "[metrics]", f"listen = {q(metrics)}",
    ]
    if timing:
        out.append("[timing]")
        out += [f"{k} = {int(v)}" for k, v in timing.items()]
    return "\n".join(out) + "\n"


async def embedded(config: Optional[str] = None, **node: Any) -> Client:
    """Start a node in this process: from a ``spookd.toml`` at ``config``, or from keyword
    arguments (see ``node_toml``: ``ledger``, ``listen``, ``connect``, ``domain``, ...)."""
    if config is not None:
        if node:
            raise errors.BadValue("give a config file or keyword arguments, not both")
        return await Client.embedded(config)
    return await Client.embedded(toml=node_toml(**node))


async def local(path: str = "spookd.sock") -> Client:
    """Attach to the ``spookd`` whose control socket is at ``path``."""
    return await Client.local(path)


async def remote(
    key_file: str,
    domain: str,
    nodes: Iterable[str],
    connect: Iterable[str],
    domain_key: Optional[str] = None,
    timeout_s: float = 10.0,
) -> Client:
    """Attach over zenoh to the first of ``nodes`` that answers, proving the key in
    ``key_file`` (created on first use; ``spook allow`` its ``Client.key_id``)."""
    return await Client.remote(key_file, domain, list(nodes), list(connect), domain_key, timeout_s)


M = TypeVar("M")


async def get_model(group: Group, register: Union[int, str], model: Type[M], view: str = "pending") -> M:
    """A register's fields as a pydantic model (``model.model_validate``); ``Group.write``
    takes a model instance directly."""
    fields = await group.get(register, view)
    return model.model_validate(fields)  # type: ignore[attr-defined,no-any-return]
