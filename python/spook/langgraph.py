"""A LangGraph checkpoint saver that keeps a graph's checkpoints in a Spook group, so a graph
interrupted in one process resumes in another, on another node of the domain.

    from spook.langgraph import SpookSaver, SAVER_FIELDS
    await client.create_group("graphs", kind="serial", schema=spook.schema(SAVER_FIELDS))
    saver = SpookSaver(client.group("graphs"))
    graph = builder.compile(checkpointer=saver)

How it is kept (every key a hashed register name, so nothing needs declaring but the fields):

* ``lg/thread/<thread>``: ``lg_gen``, the thread's generation (``delete_thread`` moves it on,
  which leaves the old checkpoints unreachable), and ``lg_ns``, the set of its namespaces;
* ``lg/ns/<thread>/<gen>/<ns>``: ``lg_head``, the newest checkpoint, and ``lg_ids``, the set of
  all of them. A put that continues from a checkpoint is a serial transaction **conditioned
  on that checkpoint being the head**, so two writers that continue one thread from the same
  checkpoint cannot both succeed: the
  second gets ``ThreadForked`` (unless the saver was made with ``allow_forks=True``, for
  LangGraph's time travel, which continues from an older checkpoint on purpose);
* the checkpoint, its metadata, each channel value and each pending write are immutable
  documents in registers of their own, written before the transaction that makes them
  reachable; one over the value size limit is split into chunks with a SHA-256 over the whole.

Reads use the pending view for documents (immutable, so any copy is the copy) and wait a
bounded time for a document whose index entry arrived before it did.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Dict, List, Optional, Tuple

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)

import spook
from spook import sync as _sync

__all__ = ["SpookSaver", "SAVER_FIELDS", "ThreadForked"]

log = logging.getLogger("spook.langgraph")

#: The fields a saver's group needs (pass to ``spook.schema``, merged with others if the
#: group is shared).
SAVER_FIELDS: Dict[str, Any] = {
    "lg_gen": "i64",
    "lg_ns": ("str", "set"),
    "lg_head": "str",
    "lg_ids": ("str", "set"),
    "lg_doc": "any",
}

#: Bytes per chunk: under the 64 KiB value limit with room for the document around it.
CHUNK = 48 * 1024
#: How long a read waits for a document its index already names (still in flight).
DOC_WAIT_S = 10.0


class ThreadForked(spook.errors.SpookError):
    """A put whose parent is not the thread's newest checkpoint: another writer continued the
    thread first. Reload the thread (``aget_tuple``) and continue from its head."""


class SpookSaver(BaseCheckpointSaver[str]):
    """Checkpoints in a serial Spook group with ``SAVER_FIELDS``."""

    def __init__(self, group: spook.Group, *, allow_forks: bool = False, serde: Any = None) -> None:
        super().__init__(serde=serde)
        self.group = group
        self.allow_forks = allow_forks
        self._id = uuid.uuid4().hex
        self._syncs = 0

    # -- keys ---------------------------------------------------------------------------

    @staticmethod
    def _thread_reg(thread: str) -> str:
        return f"lg/thread/{thread}"

    @staticmethod
    def _ns_reg(thread: str, gen: int, ns: str) -> str:
        return f"lg/ns/{thread}/{gen}/{ns}"

    @staticmethod
    def _cp_reg(thread: str, gen: int, ns: str, cid: str) -> str:
        return f"lg/cp/{thread}/{gen}/{ns}/{cid}"

    @staticmethod
    def _blob_reg(thread: str, gen: int, ns: str, channel: str, version: Any) -> str:
        return f"lg/blob/{thread}/{gen}/{ns}/{channel}/{version}"

    @staticmethod
    def _writes_reg(thread: str, gen: int, ns: str, cid: str) -> str:
        return f"lg/writes/{thread}/{gen}/{ns}/{cid}"

    @staticmethod
    def _write_reg(thread: str, gen: int, ns: str, cid: str, task: str, idx: int) -> str:
        return f"lg/write/{thread}/{gen}/{ns}/{cid}/{task}/{idx}"

    # -- documents ------------------------------------------------------------------------

    def _doc_writes(self, reg: str, doc: Dict[str, Any], payload: bytes) -> List[Tuple[str, str, Any]]:
        """The writes that store `doc` with `payload` in `reg` (chunked when large)."""
        if len(payload) <= CHUNK:
            return [(reg, "lg_doc", {**doc, "data": payload})]
        parts = [payload[i:i + CHUNK] for i in range(0, len(payload), CHUNK)]
        out: List[Tuple[str, str, Any]] = [(f"{reg}#{i}", "lg_doc", p) for i, p in enumerate(parts)]
        out.append((reg, "lg_doc", {**doc, "parts": len(parts), "sha256": hashlib.sha256(payload).hexdigest()}))
        return out

    async def _doc(self, reg: str, wait: bool = True) -> Optional[Tuple[Dict[str, Any], bytes]]:
        """A document and its payload; waits (bounded) for one still in flight if `wait`."""
        loop = asyncio.get_running_loop()
        end = loop.time() + (DOC_WAIT_S if wait else 0)
        while True:
            doc = await self.group.get_field(reg, "lg_doc")
            if isinstance(doc, dict):
                if "parts" not in doc:
                    return doc, bytes(doc.get("data", b""))
                parts = [await self.group.get_field(f"{reg}#{i}", "lg_doc") for i in range(int(doc["parts"]))]
                if all(isinstance(p, bytes) for p in parts):
                    payload = b"".join(parts)
                    if hashlib.sha256(payload).hexdigest() == doc["sha256"]:
                        return doc, payload
            if loop.time() >= end:
                return None
            await asyncio.sleep(0.05)

    async def _gen(self, thread: str) -> int:
        g = await self.group.get_field(self._thread_reg(thread), "lg_gen", "committed")
        return int(g) if isinstance(g, int) else 0

    async def _set_of(self, reg: str, field: str) -> List[str]:
        v = await self.group.get_field(reg, field)
        return [str(x) for x in v] if isinstance(v, list) else []

    # -- the saver --------------------------------------------------------------------------

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata, new_versions: ChannelVersions) -> RunnableConfig:
        conf = config["configurable"]
        thread, ns = str(conf["thread_id"]), str(conf.get("checkpoint_ns", ""))
        parent: Optional[str] = conf.get("checkpoint_id")
        gen = await self._gen(thread)
        c = dict(checkpoint)
        values: Dict[str, Any] = c.pop("channel_values", {})  # type: ignore[assignment]
        writes: List[Tuple[str, str, Any]] = []
        for channel, version in new_versions.items():
            reg = self._blob_reg(thread, gen, ns, channel, version)
            if channel in values:
                t, b = self.serde.dumps_typed(values[channel])
                writes += self._doc_writes(reg, {"type": t}, b)
            else:
                writes.append((reg, "lg_doc", {"type": "empty", "data": b""}))
        ct, cb = self.serde.dumps_typed(c)
        mt, mb = self.serde.dumps_typed(get_checkpoint_metadata(config, metadata))
        cid = str(checkpoint["id"])
        writes += self._doc_writes(self._cp_reg(thread, gen, ns, cid), {"type": ct, "meta_type": mt, "meta": mb, "parent": parent or ""}, cb)
        # The documents first: unreachable until the transaction below names them.
        await self.group.write_many(writes)
        ns_reg = self._ns_reg(thread, gen, ns)
        head = await self.group.get_field(ns_reg, "lg_head", "committed")
        tx = self.group.tx()
        if parent is None or self.allow_forks:
            pass  # a new root (what a first run writes), or forks asked for: no condition
        elif head is None:
            tx.when_absent(ns_reg, "lg_head")
        elif head == parent:
            tx.when_equals(ns_reg, "lg_head", head)
        else:
            raise ThreadForked(f"thread {thread!r} (namespace {ns!r}) moved on to {head} while this writer continued from {parent}")
        outcome = await tx.set(ns_reg, "lg_head", cid).submit()
        if not isinstance(outcome, spook.Committed):
            now = await self.group.get_field(ns_reg, "lg_head", "committed")
            if isinstance(outcome, spook.Aborted) and outcome.failed_condition is not None:
                raise ThreadForked(f"thread {thread!r} (namespace {ns!r}) moved on to {now} while this writer continued from {parent}")
            raise spook.errors.NodeLost(f"checkpoint {cid} of thread {thread!r}: {outcome!r}")
        await self.group.write_many([(ns_reg, "lg_ids", cid), (self._thread_reg(thread), "lg_ns", ns), ("lg/threads", "lg_ns", thread)])
        return {"configurable": {"thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": cid}}

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[Tuple[str, Any]], task_id: str, task_path: str = "") -> None:
        conf = config["configurable"]
        thread, ns, cid = str(conf["thread_id"]), str(conf.get("checkpoint_ns", "")), str(conf["checkpoint_id"])
        gen = await self._gen(thread)
        index = self._writes_reg(thread, gen, ns, cid)
        have = set(await self._set_of(index, "lg_ids"))
        out: List[Tuple[str, str, Any]] = []
        keys: List[str] = []
        for idx, (channel, value) in enumerate(writes):
            i = WRITES_IDX_MAP.get(channel, idx)
            key = f"{task_id}/{i}"
            if i >= 0 and key in have:
                continue  # written before: idempotent
            t, b = self.serde.dumps_typed(value)
            out += self._doc_writes(self._write_reg(thread, gen, ns, cid, task_id, i), {"type": t, "task": task_id, "channel": channel, "path": task_path, "idx": i}, b)
            keys.append(key)
        if out:
            await self.group.write_many(out)
            await self.group.write_many([(index, "lg_ids", k) for k in keys])

    async def _tuple(self, thread: str, gen: int, ns: str, cid: str, doc: Dict[str, Any], payload: bytes) -> CheckpointTuple:
        checkpoint = self.serde.loads_typed((doc["type"], payload))
        values: Dict[str, Any] = {}
        for channel, version in checkpoint.get("channel_versions", {}).items():
            got = await self._doc(self._blob_reg(thread, gen, ns, channel, version))
            if got is not None and got[0].get("type") != "empty":
                values[channel] = self.serde.loads_typed((got[0]["type"], got[1]))
        pending = []
        index = self._writes_reg(thread, gen, ns, cid)
        for key in await self._set_of(index, "lg_ids"):
            task, _, i = key.rpartition("/")
            got = await self._doc(self._write_reg(thread, gen, ns, cid, task, int(i)))
            if got is not None:
                pending.append((got[0].get("path", ""), task, int(i), got[0]["channel"], self.serde.loads_typed((got[0]["type"], got[1]))))
        pending.sort(key=lambda w: (w[0], w[1], w[2]))
        parent = str(doc.get("parent") or "")
        return CheckpointTuple(
            config={"configurable": {"thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": cid}},
            checkpoint={**checkpoint, "channel_values": values},  # type: ignore[typeddict-item]
            metadata=self.serde.loads_typed((doc["meta_type"], bytes(doc["meta"]))),
            parent_config={"configurable": {"thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": parent}} if parent else None,
            pending_writes=[(task, channel, value) for _, task, _, channel, value in pending],
        )

    async def _sync(self) -> None:
        """Bring this member's committed view up to the group's order now, as ZooKeeper's
        `sync` does: once a transaction's outcome is known here, every transaction ordered
        before it has been applied here, so a head read after it is not stale (another
        process on another node may have moved the thread on a moment ago)."""
        self._syncs += 1
        outcome = await self.group.tx().set(f"lg/sync/{self._id}", "lg_gen", self._syncs).submit()
        if not isinstance(outcome, spook.Committed):
            raise spook.errors.NodeLost(f"the group did not order a sync in time: {outcome!r}")

    async def aget_tuple(self, config: RunnableConfig) -> Optional[CheckpointTuple]:
        conf = config["configurable"]
        thread, ns = str(conf["thread_id"]), str(conf.get("checkpoint_ns", ""))
        cid = get_checkpoint_id(config)
        if cid is None:
            await self._sync()  # "the latest" must be the group's latest, not this replica's
        gen = await self._gen(thread)
        if cid is None:
            head = await self.group.get_field(self._ns_reg(thread, gen, ns), "lg_head", "committed")
            if not isinstance(head, str):
                return None
            cid = head
        elif cid not in await self._ids(thread, gen, ns):
            return None
        got = await self._doc(self._cp_reg(thread, gen, ns, cid))
        if got is None:
            return None
        return await self._tuple(thread, gen, ns, cid, *got)

    async def _ids(self, thread: str, gen: int, ns: str) -> List[str]:
        reg = self._ns_reg(thread, gen, ns)
        ids = set(await self._set_of(reg, "lg_ids"))
        head = await self.group.get_field(reg, "lg_head", "committed")
        if isinstance(head, str):
            ids.add(head)  # named by the transaction, even if the set insert after it was lost
        return sorted(ids, reverse=True)

    async def alist(self, config: Optional[RunnableConfig], *, filter: Optional[Dict[str, Any]] = None, before: Optional[RunnableConfig] = None, limit: Optional[int] = None) -> AsyncIterator[CheckpointTuple]:
        conf = (config or {}).get("configurable", {})
        threads = [str(conf["thread_id"])] if conf.get("thread_id") is not None else sorted(await self._set_of("lg/threads", "lg_ns"))
        want_ns = conf.get("checkpoint_ns")
        want_id = get_checkpoint_id(config) if config else None
        before_id = get_checkpoint_id(before) if before else None
        for thread in threads:
            gen = await self._gen(thread)
            for ns in sorted(await self._set_of(self._thread_reg(thread), "lg_ns")):
                if want_ns is not None and ns != want_ns:
                    continue
                for cid in await self._ids(thread, gen, ns):
                    if (want_id and cid != want_id) or (before_id and cid >= before_id):
                        continue
                    got = await self._doc(self._cp_reg(thread, gen, ns, cid))
                    if got is None:
                        continue
                    doc, payload = got
                    if filter:
                        meta = self.serde.loads_typed((doc["meta_type"], bytes(doc["meta"])))
                        if not all(meta.get(k) == v for k, v in filter.items()):
                            continue
                    if limit is not None:
                        if limit <= 0:
                            return
                        limit -= 1
                    yield await self._tuple(thread, gen, ns, cid, doc, payload)

    async def adelete_thread(self, thread_id: str) -> None:
        thread = str(thread_id)
        reg = self._thread_reg(thread)
        for _ in range(20):
            gen = await self._gen(thread)
            tx = self.group.tx()
            tx = tx.when_equals(reg, "lg_gen", gen) if gen else tx.when_absent(reg, "lg_gen")
            if isinstance(await tx.set(reg, "lg_gen", gen + 1).submit(), spook.Committed):
                return
        raise spook.errors.Refused(f"thread {thread!r}: could not move its generation on (20 concurrent deletes?)")

    # -- the synchronous API, on spook.sync's loop ----------------------------------------

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata, new_versions: ChannelVersions) -> RunnableConfig:
        return _sync._run(lambda: self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(self, config: RunnableConfig, writes: Sequence[Tuple[str, Any]], task_id: str, task_path: str = "") -> None:
        _sync._run(lambda: self.aput_writes(config, writes, task_id, task_path))

    def get_tuple(self, config: RunnableConfig) -> Optional[CheckpointTuple]:
        return _sync._run(lambda: self.aget_tuple(config))

    def list(self, config: Optional[RunnableConfig], *, filter: Optional[Dict[str, Any]] = None, before: Optional[RunnableConfig] = None, limit: Optional[int] = None) -> Iterator[CheckpointTuple]:
        async def collect() -> List[CheckpointTuple]:
            return [t async for t in self.alist(config, filter=filter, before=before, limit=limit)]

        return iter(_sync._run(collect))

    def delete_thread(self, thread_id: str) -> None:
        _sync._run(lambda: self.adelete_thread(thread_id))
