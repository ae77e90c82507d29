"""The LangGraph checkpoint saver: the conformance suite, a fork refused, a value over the
size limit chunked, and a graph interrupted in one process that resumes in another process
on another node."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import AsyncIterator, Dict, List

import pytest

import spook
from spook.langgraph import SAVER_FIELDS, SpookSaver, ThreadForked

from conftest import Spookd, free_port, node_kw


from langgraph.checkpoint.conformance import checkpointer_test, validate  # noqa: E402


@pytest.fixture
async def graphs(workdir: Path) -> AsyncIterator[spook.Group]:
    c = await spook.embedded(**node_kw(workdir, "lg"))
    await c.create_group("graphs", kind="serial", schema=spook.schema(SAVER_FIELDS))
    yield c.group("graphs")
    await c.close()


async def test_conformance(graphs: spook.Group) -> None:
    @checkpointer_test(name="SpookSaver")
    async def saver() -> AsyncIterator[SpookSaver]:
        yield SpookSaver(graphs)

    report = await validate(saver)
    report.print_report()
    assert report.passed_all_base(), "the base capabilities must all pass"


async def test_concurrent_writers_cannot_fork_a_thread(graphs: spook.Group) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    saver = SpookSaver(graphs)
    root = await saver.aput({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, empty_checkpoint(), {"step": 0}, {})
    a, b = empty_checkpoint(), empty_checkpoint()
    await saver.aput(root, a, {"step": 1}, {})
    with pytest.raises(ThreadForked):
        await saver.aput(root, b, {"step": 1}, {})  # continues from root too: refused
    latest = await saver.aget_tuple({"configurable": {"thread_id": "t", "checkpoint_ns": ""}})
    assert latest is not None and latest.checkpoint["id"] == a["id"]
    # Time travel, asked for: a fork from the root is kept.
    forked = await SpookSaver(graphs, allow_forks=True).aput(root, b, {"step": 1}, {})
    assert forked["configurable"]["checkpoint_id"] == b["id"]


async def test_values_over_the_size_limit_are_chunked(graphs: spook.Group) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    saver = SpookSaver(graphs)
    cp = empty_checkpoint()
    big = "x" * 300_000 + "end"
    cp["channel_values"] = {"doc": big}
    cp["channel_versions"] = {"doc": 1}
    cfg = await saver.aput({"configurable": {"thread_id": "big", "checkpoint_ns": ""}}, cp, {}, {"doc": 1})
    back = await saver.aget_tuple(cfg)
    assert back is not None and back.checkpoint["channel_values"]["doc"] == big


GRAPH = '''
import sys, json, asyncio, operator
from typing import Annotated, List, TypedDict
from langgraph.graph import StateGraph, START, END
from langgraph.types import interrupt, Command
import spook
from spook.langgraph import SpookSaver

class State(TypedDict):
    steps: Annotated[List[str], operator.add]

def plan(s): return {"steps": ["plan@" + sys.argv[1]]}
def approve(s):
    answer = interrupt("approve?")
    return {"steps": ["approved:" + answer + "@" + sys.argv[1]]}
def act(s): return {"steps": ["act@" + sys.argv[1]]}

def build(saver):
    g = StateGraph(State)
    g.add_node("plan", plan); g.add_node("approve", approve); g.add_node("act", act)
    g.add_edge(START, "plan"); g.add_edge("plan", "approve"); g.add_edge("approve", "act"); g.add_edge("act", END)
    return g.compile(checkpointer=saver)
'''


def test_graph_interrupted_in_one_process_resumes_in_another_on_another_node(workdir: Path, spookds: List[Spookd]) -> None:
    a = Spookd(workdir, "a", free_port())
    spookds.append(a)
    a.spook("init")
    a.start()
    first_port = free_port()
    script = workdir / "graph.py"
    # Process 1: a node of its own (embedded), in a group with the spookd, runs the graph to
    # its interrupt and exits. Process 2: another node, resumes it.
    script.write_text(GRAPH + textwrap.dedent('''
        async def main():
            role, ledger, connect, port = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
            spook.log_to_stderr("info")
            c = await spook.embedded(ledger=ledger, connect=connect, listen=[f"tcp/127.0.0.1:{port}"])
            print(json.dumps({"id": await c.node_id()}), flush=True)
            cmd = json.loads(sys.stdin.readline())
            await c.set_domain_key(cmd["key"])
            for peer in cmd["allow"]:
                await c.allow(peer)
            if cmd.get("invite"):
                await c.join_group(cmd["invite"])
            print(json.dumps({"ready": True}), flush=True)
            sys.stdin.readline()
            graph = build(SpookSaver(c.group("graphs")))
            cfg = {"configurable": {"thread_id": "job-42"}}
            if role == "first":
                out = await graph.ainvoke({"steps": []}, cfg)
                print(json.dumps({"interrupted": "__interrupt__" in out, "steps": out["steps"]}), flush=True)
            else:
                before = await graph.aget_state(cfg)
                out = await graph.ainvoke(Command(resume="yes"), cfg)
                print(json.dumps({"next": list(before.next), "steps": out["steps"]}), flush=True)
            await c.close()
        asyncio.run(main())
    '''))
    a_id = a.spook("id")["id"]

    def start(role: str, name: str, port: int, connect: List[str]) -> "subprocess.Popen[str]":
        (workdir / name).mkdir(exist_ok=True)
        return subprocess.Popen([sys.executable, str(script), role, str(workdir / name / "n.spookdb"), json.dumps(connect), str(port)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(workdir / f"{name}.log", "w"), text=True)

    def say(p: "subprocess.Popen[str]", msg: Dict[str, object]) -> Dict[str, object]:
        assert p.stdin and p.stdout
        p.stdin.write(json.dumps(msg) + "\n")
        p.stdin.flush()
        line = p.stdout.readline()
        assert line, f"the process ended early: see {workdir}"
        return json.loads(line)  # type: ignore[no-any-return]

    def hello(p: "subprocess.Popen[str]") -> str:
        assert p.stdout
        line = p.stdout.readline()
        assert line, f"the process ended early: see {workdir}"
        return str(json.loads(line)["id"])

    p1 = start("first", "p1", first_port, [a.locator])
    p2 = start("second", "p2", free_port(), [a.locator, f"tcp/127.0.0.1:{first_port}"])
    id1, id2 = hello(p1), hello(p2)
    for i in (id1, id2):
        a.spook("allow", i)
    invite = a.spook("group", "create", "graphs", "--member", id1, "--member", id2, "--serial", "--schema", str(write_schema(workdir)))["invite"]
    key = a.spook("domain-key")["token"]
    say(p1, {"allow": [a_id, id2], "invite": invite, "key": key})
    say(p2, {"allow": [a_id, id1], "invite": invite, "key": key})
    first = say(p1, {})
    assert first["interrupted"] and first["steps"] == ["plan@first"], first
    assert p1.wait(30) == 0
    second = say(p2, {})
    assert second["next"] == ["approve"], second
    assert second["steps"] == ["plan@first", "approved:yes@second", "act@second"], second
    assert p2.wait(30) == 0


def write_schema(workdir: Path) -> Path:
    p = workdir / "graphs.toml"
    p.write_text(spook.schema(SAVER_FIELDS))
    return p


