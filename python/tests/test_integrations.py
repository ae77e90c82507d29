"""LangChain and MCP, each driven by the framework's own test double or client, with a second
process checking the effect on the domain."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Dict, List, Tuple

import pytest

import spook
from spook.agents import agent_fields

from conftest import NodeProc, Spookd, free_port, node_kw

FIELDS = spook.schema(agent_fields({"note": "str"}))


@pytest.fixture
async def with_peer(workdir: Path, node_procs: List[NodeProc]) -> AsyncIterator[Tuple[spook.Group, NodeProc]]:
    """This process's embedded node and a Python node process, in one serial group."""
    port = free_port()
    c = await spook.embedded(**node_kw(workdir, "me", listen=[f"tcp/127.0.0.1:{port}"]))
    peer = NodeProc(workdir, "peer", [f"tcp/127.0.0.1:{port}"])
    node_procs.append(peer)
    me = await c.node_id()
    await c.allow(peer.id)
    peer.ask("allow", me)
    peer.ask("join", await c.create_group("tasks", members=[peer.id], kind="serial", schema=FIELDS))
    g = c.group("tasks")
    for _ in range(100):
        if len(await g.members()) == 2:
            break
        import asyncio
        await asyncio.sleep(0.1)
    yield g, peer
    await c.close()


async def test_langchain_fake_chat_model_drives_the_tools(with_peer: Tuple[spook.Group, NodeProc]) -> None:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from spook.langchain import spook_tools

    group, peer = with_peer
    tools = {t.name: t for t in spook_tools(group, lease_ms=60_000)}
    assert set(tools) == {"spook_read", "spook_write", "spook_claim", "spook_release", "spook_bid"}

    def calls(*cs: Tuple[str, Dict[str, Any]]) -> AIMessage:
        return AIMessage(content="", tool_calls=[{"name": n, "args": a, "id": f"call-{i}", "type": "tool_call"} for i, (n, a) in enumerate(cs)])

    model = GenericFakeChatModel(messages=iter([
        calls(("spook_claim", {"task": "task-1"}), ("spook_write", {"name": "report", "fields": {"note": "working on task-1"}})),
        calls(("spook_read", {"name": "report", "view": "pending"})),
        calls(("spook_release", {"task": "task-1"})),
    ]))

    async def turn(history: List[Any]) -> List[Dict[str, Any]]:
        ai = await model.ainvoke(history)
        history.append(ai)
        results = []
        for call in ai.tool_calls:
            msg = await tools[call["name"]].ainvoke(call)
            assert isinstance(msg, ToolMessage)
            history.append(msg)
            results.append(json.loads(msg.content) if isinstance(msg.content, str) else msg.content)
        return results

    history: List[Any] = [HumanMessage("take task-1 and report")]
    claimed, wrote = await turn(history)
    assert claimed["ok"] and claimed["fence"] > 0 and wrote["ok"], (claimed, wrote)
    # The other process sees the claim (refused) and the report.
    with pytest.raises(RuntimeError, match="Held"):
        peer.ask("claim", "tasks", "task-1", 5000)
    assert _eventually_get(peer, "report") == {"note": "working on task-1"}
    (read,) = await turn(history)
    assert read["fields"] == {"note": "working on task-1"}
    (released,) = await turn(history)
    assert released["ok"]
    assert peer.ask("claim", "tasks", "task-1", 5000)["fence"] > claimed["fence"]
    # A refusal is a result the model reads, not an exception.
    again = await tools["spook_claim"].ainvoke({"task": "task-1"})
    assert again["refused"] == "Held", again
    # The sync face of the same tool.
    assert tools["spook_read"].invoke({"name": "report"})["ok"]


def _eventually_get(peer: NodeProc, register: str) -> Dict[str, Any]:
    import time
    for _ in range(100):
        got = peer.ask("get", "tasks", register)
        if got:
            return got  # type: ignore[no-any-return]
        time.sleep(0.1)
    return {}


async def test_mcp_server_over_stdio(workdir: Path, spookds: List[Spookd]) -> None:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    a = Spookd(workdir, "a", free_port())
    spookds.append(a)
    a.spook("init")
    a.start()
    a.spook("group", "create", "tasks", "--serial", "--schema", str(_schema_file(workdir)))
    params = StdioServerParameters(command=sys.executable, args=["-m", "spook.mcp", "--local", str(a.socket), "--group", "tasks", "--lease-ms", "60000"], cwd=str(workdir))
    errlog = open(workdir / "mcp.log", "w")
    async with stdio_client(params, errlog=errlog) as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            names = {t.name for t in (await session.list_tools()).tools}
            assert {"read", "write", "claim", "release", "bid", "status"} <= names
            claimed = _result(await session.call_tool("claim", {"task": "job-7"}))
            assert claimed["ok"], claimed
            wrote = _result(await session.call_tool("write", {"register": "job-7", "fields": {"note": "on it"}}))
            assert wrote["ok"], wrote
            # Another process (the spook CLI on the node) sees both.
            got = a.spook("get", "tasks", "job-7")["fields"]
            assert got["note"] == "on it" and got.get("owner"), got
            # Another agent (this process, through the node's socket) is refused the task.
            other = await spook.local(str(a.socket))
            with pytest.raises(spook.Held):
                await spook.agents.Claims(other.group("tasks")).claim("job-7")
            await other.close()
            res = await session.read_resource("spook://register/job-7")
            assert json.loads(res.contents[0].text)["fields"]["note"] == "on it"  # type: ignore[union-attr]
            refused = _result(await session.call_tool("release", {"task": "job-9"}))
            assert refused == {"ok": False, "refused": "NotHolder", "error": "this agent holds no claim on 'job-9'"}
    errlog.close()
    assert "serving group 'tasks'" in (workdir / "mcp.log").read_text()


def _result(r: Any) -> Dict[str, Any]:
    if getattr(r, "structuredContent", None):
        sc = r.structuredContent
        return sc.get("result", sc)  # type: ignore[no-any-return]
    return json.loads(r.content[0].text)  # type: ignore[no-any-return]


def _schema_file(workdir: Path) -> Path:
    p = workdir / "tasks.toml"
    p.write_text(FIELDS)
    return p
