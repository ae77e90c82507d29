"""A Python node process for the tests: an embedded node, driven by JSON commands on stdin
(one per line), answering one JSON line each on stdout. Logs go to stderr.

    python node_proc.py LEDGER '["tcp/127.0.0.1:7501"]' PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, Dict, List

import spook
import spook.agents


async def main() -> None:
    ledger, connect, port = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    spook.log_to_stderr("info")
    client = await spook.embedded(ledger=ledger, connect=connect, listen=[f"tcp/127.0.0.1:{port}"])
    groups: Dict[str, spook.Group] = {}
    loop = asyncio.get_running_loop()

    def group(name: str) -> spook.Group:
        return groups.setdefault(name, client.group(name))

    async def run(op: str, args: List[Any]) -> Any:
        if op == "id":
            return await client.node_id()
        if op == "allow":
            return await client.allow(args[0])
        if op == "set_domain_key":
            return await client.set_domain_key(args[0])
        if op == "join":
            return await client.join_group(args[0])
        if op == "write":
            return await group(args[0]).write(args[1], args[2])
        if op == "get":
            return await group(args[0]).get(args[1], args[2] if len(args) > 2 else "pending")
        if op == "status":
            s = await group(args[0]).status()
            return {"state_hash": s.state_hash, "committed_hash": s.committed_hash, "members": s.members, "pending": s.pending}
        if op == "claim":
            c = await spook.agents.Claims(group(args[0]), lease_ms=args[2]).claim(args[1])
            return {"task": c.task, "fence": c.fence}
        if op == "close":
            return await client.close()
        raise ValueError(f"unknown op {op!r}")

    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        op, *args = json.loads(line)
        try:
            answer: Dict[str, Any] = {"ok": await run(op, args)}
        except Exception as e:  # every failure goes back to the test, typed
            answer = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer), flush=True)
        if op == "close":
            break




asyncio.run(main())
