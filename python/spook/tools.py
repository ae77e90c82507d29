"""The operations an AI agent is given, as plain async functions that take and return
JSON-able values: read and write registers, claim and release tasks, bid, post and read
blackboard entries, arrive at a barrier. ``spook.langchain`` and ``spook.mcp`` expose these
same functions to their frameworks, so both behave alike.

Refusals come back as results (``{"ok": false, "refused": "Held", "error": "..."}``), not
exceptions: a model reads them and decides what to do next.
"""

from __future__ import annotations

from typing import Any, Dict

import spook
from spook import agents

__all__ = ["AgentTools"]


def _refusal(e: spook.SpookError) -> Dict[str, Any]:
    return {"ok": False, "refused": type(e).__name__, "error": str(e)}


class AgentTools:
    """Tools over one group for one agent (its session is the client's)."""

    def __init__(self, group: spook.Group, *, lease_ms: int = 30_000, owner_field: str = "owner") -> None:
        self.group = group
        self.claims = agents.Claims(group, owner_field, lease_ms=lease_ms)
        self.held: Dict[int, agents.Claim] = {}

    async def read(self, register: str, view: str = "committed") -> Dict[str, Any]:
        """All fields of a register (`view`: committed, the default, or pending)."""
        try:
            return {"ok": True, "register": register, "fields": _jsonable(await self.group.get(register, view))}
        except spook.SpookError as e:
            return _refusal(e)

    async def write(self, register: str, fields: Dict[str, Any]) -> Dict[str, Any]:
        """Write fields of a register (a dict of field name to value)."""
        try:
            return {"ok": True, "seq": await self.group.write(register, fields)}
        except spook.SpookError as e:
            return _refusal(e)

    async def claim(self, task: str) -> Dict[str, Any]:
        """Claim a task for this agent, unless another agent holds it."""
        try:
            c = await self.claims.claim(task)
        except spook.SpookError as e:
            return _refusal(e)
        self.held[c.task] = c
        return {"ok": True, "task": task, "fence": c.fence, "lease_ms": c.lease_ms}

    async def release(self, task: str) -> Dict[str, Any]:
        """Release a task this agent claimed."""
        try:
            rid = await self.group.register_id(task)
            c = self.held.pop(rid, None)
            if c is None:
                return {"ok": False, "refused": "NotHolder", "error": f"this agent holds no claim on {task!r}"}
            await self.claims.release(c)
            return {"ok": True, "task": task}
        except spook.SpookError as e:
            return _refusal(e)

    async def bid(self, auction: str, amount: float) -> Dict[str, Any]:
        """Bid in an open auction."""
        try:
            return {"ok": True, "auction": auction, "seq": await agents.Auctions(self.group).bid(auction, amount)}
        except spook.SpookError as e:
            return _refusal(e)

    async def auction_result(self, auction: str) -> Dict[str, Any]:
        """The winner of an auction whose bidding has ended."""
        try:
            r = await agents.Auctions(self.group).result(auction)
            return {"ok": True, "winner": r.winner, "amount": r.amount}
        except spook.SpookError as e:
            return _refusal(e)

    async def post(self, key: str, entry: Dict[str, Any]) -> Dict[str, Any]:
        """Post a blackboard entry nobody holds."""
        try:
            return {"ok": True, "seq": await agents.Blackboard(self.group).post(key, entry)}
        except spook.SpookError as e:
            return _refusal(e)

    async def board_read(self, key: str) -> Dict[str, Any]:
        """A blackboard entry and its owner."""
        try:
            p = await agents.Blackboard(self.group).read(key)
        except spook.SpookError as e:
            return _refusal(e)
        return {"ok": True, "owner": p.owner if p else None, "entry": _jsonable(p.entry) if p else None}

    async def arrive(self, barrier: str) -> Dict[str, Any]:
        """Arrive at a barrier."""
        try:
            await agents.Barrier(self.group, barrier).arrive()
            return {"ok": True}
        except spook.SpookError as e:
            return _refusal(e)

    async def status(self) -> Dict[str, Any]:
        """The group's members, pending count and state hash on this agent's node."""
        try:
            s = await self.group.status()
        except spook.SpookError as e:
            return _refusal(e)
        return {"ok": True, "name": s.name, "kind": s.kind, "members": s.members, "pending": s.pending, "state_hash": s.state_hash}


def _jsonable(v: Any) -> Any:
    """Bytes as hex, so that results are JSON."""
    if isinstance(v, (bytes, bytearray)):
        return {"hex": bytes(v).hex()}
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


