"""LangChain tools over a Spook group: a chat model that calls tools can claim and release
tasks, read and write registers, and bid, coordinating with every other agent of the group.

    from spook.langchain import spook_tools
    tools = spook_tools(client.group("tasks"))
    model = model.bind_tools(tools)

Each tool is ``spook.tools.AgentTools`` underneath; a refusal comes back as the tool's result
(``{"ok": false, "refused": "Held", ...}``) for the model to read.
"""

from __future__ import annotations

from typing import Any, Dict, List

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

import spook
from spook import sync as _sync
from spook.tools import AgentTools

__all__ = ["spook_tools"]


# `name`, not `register`: pydantic models have a `register` attribute (ABC's) of their own.
class _Register(BaseModel):
    name: str = Field(description="the register's name")
    view: str = Field(default="committed", description="committed (agreed) or pending (this replica's latest)")


class _Write(BaseModel):
    name: str = Field(description="the register's name")
    fields: Dict[str, Any] = Field(description="field name to value")


class _Task(BaseModel):
    task: str = Field(description="the task's register name")


class _Bid(BaseModel):
    auction: str = Field(description="the auction's register name")
    amount: float = Field(description="the bid")


def spook_tools(group: spook.Group, *, lease_ms: int = 30_000, owner_field: str = "owner") -> List[BaseTool]:
    """The tools ``spook_read``, ``spook_write``, ``spook_claim``, ``spook_release`` and
    ``spook_bid`` for one agent on ``group`` (sync and async)."""
    t = AgentTools(group, lease_ms=lease_ms, owner_field=owner_field)

    def tool(name: str, fn: Any, schema: type, description: str) -> BaseTool:
        def sync(**kw: Any) -> Dict[str, Any]:
            return _sync._run(lambda: fn(**kw))

        return StructuredTool.from_function(func=sync, coroutine=fn, name=name, description=description, args_schema=schema)

    async def read(name: str, view: str = "committed") -> Dict[str, Any]:
        return await t.read(name, view)

    async def write(name: str, fields: Dict[str, Any]) -> Dict[str, Any]:
        return await t.write(name, fields)

    return [
        tool("spook_read", read, _Register, "Read all fields of a shared register."),
        tool("spook_write", write, _Write, "Write fields of a shared register."),
        tool("spook_claim", t.claim, _Task, "Claim a task so that no other agent works on it; refused if another agent holds it."),
        tool("spook_release", t.release, _Task, "Release a task this agent claimed."),
        tool("spook_bid", t.bid, _Bid, "Bid in an open auction for a task."),
    ]
