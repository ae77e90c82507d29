"""``python -m spook.mcp``: a Model Context Protocol server over stdio that gives any
MCP-speaking agent a Spook group's registers and the agent patterns, as tools and resources.
Logs go to stderr; stdout carries the protocol.

    python -m spook.mcp --local /run/spook/spookd.sock --group tasks
    python -m spook.mcp --embedded spookd.toml --group tasks
    python -m spook.mcp --remote agent.key --domain lab --node ID --connect tcp/10.0.0.5:7447 \\
        --domain-key TOKEN --group tasks

Tools: ``read``, ``write``, ``claim``, ``release``, ``bid``, ``auction_result``, ``post``,
``board_read``, ``arrive``, ``status`` (``spook.tools.AgentTools``). Resources:
``spook://status`` and ``spook://register/{name}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any, Dict, List, Optional

from mcp.server.mcpserver import MCPServer

import spook
from spook.tools import AgentTools

__all__ = ["server", "main"]

log = logging.getLogger("spook.mcp")


def server(tools: AgentTools) -> MCPServer:
    """An MCP server whose tools and resources act on `tools`' group."""
    s: MCPServer = MCPServer(name="spook", instructions=(
        f"Shared registers of the Spook group {tools.group.name!r}: read and write them, claim tasks "
        "before working on them (release when done), bid in auctions. Refusals come back as "
        '{"ok": false, "refused": ...}.'))

    @s.tool(description="Read all fields of a shared register (view: committed or pending).")
    async def read(register: str, view: str = "committed") -> Dict[str, Any]:
        return await tools.read(register, view)

    @s.tool(description="Write fields of a shared register (a dict of field name to value).")
    async def write(register: str, fields: Dict[str, Any]) -> Dict[str, Any]:
        return await tools.write(register, fields)

    @s.tool(description="Claim a task so that no other agent works on it; refused if another agent holds it.")
    async def claim(task: str) -> Dict[str, Any]:
        return await tools.claim(task)

    @s.tool(description="Release a task this agent claimed.")
    async def release(task: str) -> Dict[str, Any]:
        return await tools.release(task)

    @s.tool(description="Bid in an open auction.")
    async def bid(auction: str, amount: float) -> Dict[str, Any]:
        return await tools.bid(auction, amount)

    @s.tool(description="The winner of an auction whose bidding has ended.")
    async def auction_result(auction: str) -> Dict[str, Any]:
        return await tools.auction_result(auction)

    @s.tool(description="Post a blackboard entry in a register nobody holds.")
    async def post(key: str, entry: Dict[str, Any]) -> Dict[str, Any]:
        return await tools.post(key, entry)

    @s.tool(description="Read a blackboard entry and its owner.")
    async def board_read(key: str) -> Dict[str, Any]:
        return await tools.board_read(key)

    @s.tool(description="Arrive at a barrier.")
    async def arrive(barrier: str) -> Dict[str, Any]:
        return await tools.arrive(barrier)

    @s.tool(description="The group's members, pending count and state hash.")
    async def status() -> Dict[str, Any]:
        return await tools.status()

    @s.resource("spook://status", mime_type="application/json", description="The group's status on this node.")
    async def status_resource() -> str:
        return json.dumps(await tools.status())

    @s.resource("spook://register/{name}", mime_type="application/json", description="A register's committed fields.")
    async def register_resource(name: str) -> str:
        return json.dumps(await tools.read(name))

    return s


def _args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m spook.mcp", description="An MCP server (stdio) over a Spook group.")
    way = p.add_mutually_exclusive_group(required=True)
    way.add_argument("--local", metavar="SOCKET", help="attach to the spookd whose control socket this is")
    way.add_argument("--embedded", metavar="CONFIG", help="run a node in this process from this spookd.toml")
    way.add_argument("--remote", metavar="KEY_FILE", help="attach over zenoh with this client key (created on first use)")
    p.add_argument("--domain", default="default", help="the domain (--remote)")
    p.add_argument("--node", action="append", default=[], help="a node's id to attach to, in order of preference (--remote)")
    p.add_argument("--connect", action="append", default=[], help="a zenoh endpoint of the domain (--remote)")
    p.add_argument("--domain-key", help="the domain key's token (--remote)")
    p.add_argument("--group", required=True, help="the group whose registers the tools act on")
    p.add_argument("--lease-ms", type=int, default=30_000, help="how long a claim holds its task (default 30 000)")
    p.add_argument("--log", default="info", help="log filter for stderr (default info)")
    return p.parse_args(argv)


async def _main(a: argparse.Namespace) -> None:
    if a.local:
        client = await spook.local(a.local)
    elif a.embedded:
        client = await spook.embedded(a.embedded)
    else:
        client = await spook.remote(a.remote, a.domain, a.node, a.connect, a.domain_key)
    log.info("serving group %r of node %s over MCP (stdio)", a.group, await client.node_id())
    try:
        await server(AgentTools(client.group(a.group), lease_ms=a.lease_ms)).run_stdio_async()
    finally:
        await client.close()


def main(argv: Optional[List[str]] = None) -> None:
    a = _args(argv)
    logging.basicConfig(stream=sys.stderr, level=a.log.upper() if a.log.upper() in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO")
    spook.log_to_stderr(a.log)
    try:
        asyncio.run(_main(a))
    except spook.SpookError as e:
        print(f"spook.mcp: {e}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
