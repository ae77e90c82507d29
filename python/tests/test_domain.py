"""Python beside Rust, for real: a `spookd` and two Python processes (each an embedded node)
form a group over zenoh on loopback, write, and converge to the state hash `spook status
--json` reports; a remote Python client attaches over zenoh with its own key and moves to
the next node when its node is killed."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any, Dict, List

import spook

from conftest import NodeProc, Spookd, eventually, free_port


def hash_of(status: Dict[str, Any], group: str) -> str:
    return next(g["state_hash"] for g in status["groups"] if g["name"] == group)


def test_two_python_processes_and_spookd_converge(workdir: Path, spookds: List[Spookd], node_procs: List[NodeProc]) -> None:
    a = Spookd(workdir, "a", free_port())
    spookds.append(a)
    a_id = a.spook("init")["id"]
    key = a.spook("domain-key")["token"]
    a.start()
    p1 = NodeProc(workdir, "p1", [a.locator], free_port())
    node_procs.append(p1)
    p2 = NodeProc(workdir, "p2", [a.locator], free_port())
    node_procs.append(p2)
    for p in (p1, p2):
        p.ask("set_domain_key", key)
        a.spook("allow", p.id)
        p.ask("allow", a_id)
    p1.ask("allow", p2.id)
    p2.ask("allow", p1.id)
    invite = a.spook("group", "create", "fleet", "--member", p1.id, "--member", p2.id)["invite"]
    p1.ask("join", invite)
    p2.ask("join", invite)
    for i in range(40):
        p1.ask("write", "fleet", i, {"battery": 1.0 - i / 100})
        p2.ask("write", "fleet", 100 + i, {"battery": 0.5, "pose.rotation": [1, 0, 0, 0]})
    a.spook("set", "fleet", "7", "odometer", "3")

    def converged() -> bool:
        h = hash_of(a.spook("status"), "fleet")
        return p1.ask("status", "fleet")["state_hash"] == h == p2.ask("status", "fleet")["state_hash"]

    eventually("a spookd and two Python nodes hold one state hash", 60, converged, every=0.5)
    # What converged is what was written, on every side.
    assert p2.ask("get", "fleet", 7) == {"odometer": 3, "battery": 1.0 - 7 / 100}
    assert p1.ask("get", "fleet", 139) == {"battery": 0.5, "pose.rotation": [1.0, 0.0, 0.0, 0.0]}
    assert a.spook("get", "fleet", "3")["fields"]["battery"] == 0.97
    assert sorted(p1.ask("status", "fleet")["members"]) == sorted([a_id, p1.id, p2.id])


def test_remote_python_client_fails_over_when_its_node_dies(workdir: Path, spookds: List[Spookd]) -> None:
    pa, pb = free_port(), free_port()
    a = Spookd(workdir, "a", pa)
    b = Spookd(workdir, "b", pb, connect=[pa])
    spookds += [a, b]
    a_id = a.spook("init")["id"]
    key = a.spook("domain-key")["token"]
    b_id = b.spook("init", "--domain-key", key)["id"]
    me = spook.Client.key_id(str(workdir / "agent.key"))
    for n, other in ((a, b_id), (b, a_id)):
        n.spook("allow", other)
        n.spook("allow", me, "--name", "agent")
    a.start()
    b.start()
    invite = a.spook("group", "create", "tasks", "--member", b_id, "--serial")["invite"]
    b.spook("group", "join", invite)

    async def run() -> None:
        c = await spook.remote(str(workdir / "agent.key"), "default", [a_id, b_id], [a.locator, b.locator], domain_key=key, timeout_s=5)
        assert c.mode == "remote" and c.session_id == me
        tasks = c.group("tasks")
        first = await tasks.tx().when_absent("job-1", "owner").set("job-1", "owner", me).submit()
        assert isinstance(first, spook.Committed), first
        assert await c.node_id() == a_id
        with __import__("pytest").raises(spook.NotAllowed):
            await c.create_group("mine")  # administration stays on the node's machine
        assert a.proc is not None
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        # b alone is half of a pair: an operator removes the dead member so that b decides.
        b.spook("group", "remove", "tasks", a_id)
        # The same session goes on through b; job-1's claim is still there.
        for _ in range(50):
            try:
                assert await tasks.get_field("job-1", "owner", "committed") == me
                break
            except spook.NodeLost:
                await asyncio.sleep(0.2)
        assert await c.node_id() == b_id
        again = await tasks.tx().when_absent("job-1", "owner").set("job-1", "owner", "someone-else").submit()
        assert isinstance(again, spook.Aborted)
        await c.close()

    asyncio.run(run())


def test_watch_reports_a_killed_member_decohering(workdir: Path, spookds: List[Spookd]) -> None:
    a = Spookd(workdir, "a", free_port())
    spookds.append(a)
    a_id = a.spook("init")["id"]
    key = a.spook("domain-key")["token"]
    a.start()

    async def run() -> None:
        c = await spook.embedded(ledger=str(workdir / "p.spookdb"), connect=[a.locator])
        await c.set_domain_key(key)
        me = await c.node_id()
        a.spook("allow", me)
        await c.allow(a_id)
        await c.join_group(a.spook("group", "create", "fleet", "--member", me)["invite"])
        g = c.group("fleet")
        w = await g.watch()
        a.spook("set", "fleet", "1", "battery", "0.5")
        loop = asyncio.get_running_loop()

        async def until(what: str, f: Any, within: float) -> Any:
            end = loop.time() + within
            while loop.time() < end:
                e = await asyncio.wait_for(w.__anext__(), max(0.01, end - loop.time()))
                if f(e):
                    return e
            raise AssertionError(f"{what}: not within {within} s")

        await until("a's write arrives", lambda e: isinstance(e, spook.Change) and e.fields.get("battery") == 0.5, 30)
        assert a.proc is not None
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        gone = await until("a decoheres", lambda e: isinstance(e, spook.MemberDecohered), 30)
        assert gone.member == a_id
        # Nobody blocks: this member still writes and reads.
        await g.set(2, "battery", 0.25)
        assert await g.get_field(2, "battery") == 0.25
        await c.close()

    asyncio.run(run())
