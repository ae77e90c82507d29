"""The async API on an embedded node: values in and out, transactions and their outcomes,
watches in commit order with Lagged, and bad input that raises the right exception and
loses nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator, List

import numpy as np
import pytest
from pydantic import BaseModel

import spook

from conftest import node_kw

FIELDS = spook.schema({
    "text": "str", "n": "i64", "x": "f64", "blob": "bytes", "any": "any", "pos": "vec3",
    "rot": "quat", "pose": "pose", "hits": ("i64", "counter"), "owner": "str",
})


async def next_change(w: spook.Watch) -> spook.Change:
    """The next change (frontier moves and the like skipped), within 5 s."""
    for _ in range(1000):
        e = await asyncio.wait_for(w.__anext__(), 5)
        if isinstance(e, spook.Change):
            return e
    raise AssertionError("no change in 1000 events")


@pytest.fixture
async def client(workdir: Path) -> AsyncIterator[spook.Client]:
    c = await spook.embedded(**node_kw(workdir, "a"))
    yield c
    await c.close()


@pytest.fixture
async def notes(client: spook.Client) -> spook.Group:
    await client.create_group("notes", kind="serial", schema=FIELDS)
    return client.group("notes")


async def test_values_round_trip(notes: spook.Group) -> None:
    await notes.write("r", {
        "text": "héllo", "n": -(2**62), "x": 1.5, "blob": b"\x00\xff", "any": {"a": [1, "b", None, True]},
        "pos": np.array([1, 2, 3], dtype=np.float32), "rot": (1, 0, 0, 0), "pose": [0.5, 0, 0, 1, 0, 0, 0], "hits": 2,
    })
    await notes.set("r", "hits", 3)
    got = await notes.get("r")
    assert got == {
        "text": "héllo", "n": -(2**62), "x": 1.5, "blob": b"\x00\xff", "any": {"a": [1, "b", None, True]},
        "pos": [1.0, 2.0, 3.0], "rot": [1.0, 0.0, 0.0, 0.0], "pose": {"translation": [0.5, 0.0, 0.0], "rotation": [1.0, 0.0, 0.0, 0.0]},
        "hits": 5,
    }
    assert await notes.get_field("r", "pos") == [1.0, 2.0, 3.0]
    assert await notes.get_field("r", "text", "committed") in (None, "héllo")
    assert await notes.get_field("nothing-here", "text") is None
    # A numpy scalar and an int where a float goes.
    await notes.write("s", {"x": np.float32(2.5), "n": np.int64(7)})
    assert await notes.get("s") == {"x": 2.5, "n": 7}
    await notes.set("s", "x", 3)
    assert await notes.get_field("s", "x") == 3.0


async def test_pydantic_model_is_a_register(notes: spook.Group) -> None:
    class Note(BaseModel):
        text: str
        n: int
        pos: List[float]

    await notes.write("m", Note(text="t", n=4, pos=[0.0, 1.0, 2.0]))
    back = await spook.get_model(notes, "m", Note)
    assert back == Note(text="t", n=4, pos=[0.0, 1.0, 2.0])


async def test_transaction_outcomes(notes: spook.Group) -> None:
    first = await notes.tx().when_absent("task", "owner").set("task", "owner", "a").lease_ms(60_000).submit()
    assert isinstance(first, spook.Committed) and first.fence > 0
    second = await notes.tx().when_absent("task", "owner").set("task", "owner", "b").submit()
    assert isinstance(second, spook.Aborted) and second.failed_condition == 0, second
    assert await notes.get_field("task", "owner", "committed") == "a"
    # A resend of a committed seq executes once and says so.
    again = await notes.tx().when_absent("other", "owner").set("other", "owner", "c").seq(first.seq + 100).submit()
    resent = await notes.tx().when_absent("other", "owner").set("other", "owner", "c").seq(first.seq + 100).submit()
    assert isinstance(again, spook.Committed) and isinstance(resent, spook.Committed) and resent.resent
    known = await notes.outcome(again.seq)
    assert isinstance(known, spook.Committed) and known.fence == again.fence
    assert await notes.outcome(again.seq + 12345) is None
    pending = await notes.tx().set("p", "text", "later").no_wait().submit()
    assert isinstance(pending, spook.Pending)
    # compare conditions
    await notes.tx().set("c", "n", 5).submit()
    lt = await notes.tx().when_compare("c", "n", "<", 10).set("c", "text", "small").submit()
    gt = await notes.tx().when_compare("c", "n", ">", 10).set("c", "text", "big").submit()
    assert isinstance(lt, spook.Committed) and isinstance(gt, spook.Aborted)


async def test_transaction_decoheres_when_its_group_cannot_decide(workdir: Path) -> None:
    # A serial group of this node and a member that never comes: no majority, so the
    # transaction's deadline passes with its outcome unknown here.
    absent = spook.Client.key_id(str(workdir / "absent.key"))
    c = await spook.embedded(**node_kw(workdir, "solo"))
    try:
        await c.allow(absent)
        await c.create_group("pair", members=[absent], kind="serial", schema=FIELDS)
        o = await c.group("pair").tx().set("t", "text", "x").deadline_ms(500).submit()
        assert isinstance(o, spook.Decohered), o
    finally:
        await c.close()


async def test_watch_is_in_commit_order_with_snapshot(notes: spook.Group) -> None:
    await notes.set("before", "n", 1)
    w = await notes.watch(snapshot=True)
    first = await next_change(w)
    assert first.snapshot and first.fields == {"n": 1}
    for i in range(50):
        await notes.set("counter", "n", i)
    seen = []
    while len(seen) < 50:
        e = await asyncio.wait_for(w.__anext__(), 5)
        if isinstance(e, spook.Change) and not e.snapshot:
            seen.append(e.fields["n"])
    assert seen == list(range(50))
    await w.close()
    with pytest.raises(StopAsyncIteration):
        await w.__anext__()


async def test_watch_of_some_registers(notes: spook.Group) -> None:
    w = await notes.watch(registers=["b"])
    await notes.set("a", "n", 1)
    await notes.set("b", "n", 2)
    e = await next_change(w)
    assert e.fields == {"n": 2} and e.register == await notes.register_id("b")


async def test_close_ends_a_waiting_watch_now(notes: spook.Group) -> None:
    w = await notes.watch(registers=["quiet"])
    waiting = asyncio.ensure_future(w.__anext__())
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await asyncio.wait_for(w.close(), 2)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 2)


async def test_slow_watcher_gets_lagged_then_a_snapshot(notes: spook.Group) -> None:
    w = await notes.watch()
    # Far more changes than the watch's queue holds, while nobody reads.
    for i in range(3000):
        await notes.set(f"r{i % 7}", "n", i)
    lagged = None
    last = {}
    for _ in range(5000):
        try:
            e = await asyncio.wait_for(w.__anext__(), 2)
        except asyncio.TimeoutError:
            break
        if isinstance(e, spook.Lagged):
            lagged = e
        elif isinstance(e, spook.Change):
            last[e.register] = e.fields["n"]
    assert lagged is not None and lagged.missed > 0
    # After the lag, each register's latest value arrived.
    for k in range(7):
        rid = await notes.register_id(f"r{k}")
        assert last[rid] == max(i for i in range(3000) if i % 7 == k)


async def test_bad_input_raises_and_loses_nothing(client: spook.Client, notes: spook.Group) -> None:
    await notes.set("keep", "text", "safe")
    with pytest.raises(spook.BadValue, match="vector"):
        await notes.set("keep", "pos", "not a vector")
    with pytest.raises(spook.BadValue, match="no field"):
        await notes.set("keep", "colour", "red")
    with pytest.raises(spook.BadValue):
        await notes.set("keep", "n", 2**70)
    with pytest.raises(spook.BadValue):
        await notes.set("keep", "rot", [2, 0, 0, 0])
    with pytest.raises(spook.BadValue):
        await notes.set(-1, "n", 1)
    with pytest.raises(spook.BadValue):
        await notes.set("keep", "any", object())
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    with pytest.raises(spook.BadValue, match="deeper"):
        await notes.set("keep", "any", deep)
    with pytest.raises(spook.BadValue):
        await notes.write("keep", ["not", "a", "dict"])
    with pytest.raises(spook.BadValue):
        await notes.set("keep", "blob", b"x" * (1 << 20))
    with pytest.raises(spook.BadValue):
        await notes.get("keep", "sideways")
    with pytest.raises(spook.NotFound):
        await client.group("nope").get("r")
    with pytest.raises(spook.BadValue):
        await client.create_group("bad", kind="weird")
    with pytest.raises(spook.BadValue):
        await client.create_group("bad", schema="[[field]]\nname='x'\nkind='complex'")
    with pytest.raises(spook.BadValue):
        await client.allow("not-an-id")
    with pytest.raises(spook.BadValue):
        spook.schema({"x": "complex"})
    assert await notes.get("keep") == {"text": "safe"}
    assert isinstance(spook.BadValue("x"), ValueError) and issubclass(spook.NodeLost, ConnectionError)


async def test_convergent_group_and_events(client: spook.Client) -> None:
    await client.create_group("fleet")
    fleet = client.group("fleet")
    await fleet.write(7, {"battery": 0.8, "pose.rotation": [1, 0, 0, 0]})
    assert await fleet.get(7) == {"battery": 0.8, "pose.rotation": [1.0, 0.0, 0.0, 0.0]}
    w = await fleet.watch(view="committed")
    await fleet.set(7, "battery", 0.5)
    kinds = set()
    for _ in range(20):
        e = await asyncio.wait_for(w.__anext__(), 5)
        kinds.add(type(e).__name__)
        if isinstance(e, spook.Change):
            assert e.view == "committed" and e.fields["battery"] == 0.5
            break
    assert "Change" in kinds
    assert (await fleet.status()).kind == "convergent"
    assert "fleet" in await client.groups()


async def test_open_group_creates_once(workdir: Path) -> None:
    for run in range(2):  # a script run twice: the group is created once, then found
        c = await spook.embedded(**node_kw(workdir, "again"))
        g = await c.open_group("notes", schema=spook.schema({"text": "str"}))
        if run == 0:
            await g.set("n", "text", "first run")
        assert await g.get("n") == {"text": "first run"}
        await c.close()


async def test_closed_client_refuses(workdir: Path) -> None:
    c = await spook.embedded(**node_kw(workdir, "closing"))
    await c.create_group("g")
    await c.close()
    await c.close()  # again: nothing
    with pytest.raises(spook.NodeLost):
        await c.group("g").get(1)
