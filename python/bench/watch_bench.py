"""Python write -> remote watch: latency and updates/s of Spook's Python API against the
eclipse-zenoh Python package publishing the same payload, in the same run.

    target/spook-venv/bin/python python/bench/watch_bench.py [--n 2000] [--latency 300] [--payload 64]

Each side runs in a process of its own (two zenoh stacks in one process would share nothing
but contend), on loopback, scouting off:

* spook: two embedded nodes, A and B, paired in a convergent group; A writes a register
  (`seq`, and `payload` bytes), B watches the pending view;
* zenoh: two zenoh sessions (peer mode), A puts `seq + payload` on a key, B subscribes.

Latency: one write in flight at a time, from A's call to B's event (p50, p95). Updates/s: A
writes `--n` updates back to back (each awaited: Spook answers a write once its node took
it), until B has seen the last; then Spook again with 64 writes in flight (zenoh's puts wait
for nothing). The ratios are Spook / zenoh.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def spook_side(n: int, lat_n: int, size: int) -> Dict[str, Any]:
    import spook

    d = tempfile.mkdtemp(prefix="spook-bench-")
    port = free_port()
    a = await spook.embedded(ledger=f"{d}/a.spookdb", listen=[f"tcp/127.0.0.1:{port}"])
    b = await spook.embedded(ledger=f"{d}/b.spookdb", connect=[f"tcp/127.0.0.1:{port}"])
    await a.allow(await b.node_id())
    await b.allow(await a.node_id())
    invite = await a.create_group("bench", members=[await b.node_id()], schema=spook.schema({"seq": "i64", "payload": "bytes"}))
    await b.join_group(invite)
    ga, gb = a.group("bench"), b.group("bench")
    w = await gb.watch()
    payload = os.urandom(size)

    async def seen(target: int, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while True:
            e = await asyncio.wait_for(w.__anext__(), max(0.01, end - time.monotonic()))
            if isinstance(e, spook.Change) and e.fields.get("seq", -1) >= target:
                return

    # Warm up: the pair's channel and the group's keys are in place once a write arrives.
    await ga.write(1, {"seq": 0, "payload": payload})
    await seen(0)
    lat: List[float] = []
    for i in range(1, lat_n + 1):
        t0 = time.perf_counter()
        await ga.write(1, {"seq": i, "payload": payload})
        await seen(i)
        lat.append(time.perf_counter() - t0)
    base = lat_n + 1
    t0 = time.perf_counter()
    for i in range(n):
        await ga.write(1, {"seq": base + i, "payload": payload})
    await seen(base + n - 1, timeout=120)
    took = time.perf_counter() - t0
    # Pipelined: 64 writes in flight at a time (asyncio.gather), as a busy agent would issue them.
    base2 = base + n
    t1 = time.perf_counter()
    for k in range(0, n, 64):
        await asyncio.gather(*(ga.write(1, {"seq": base2 + i, "payload": payload}) for i in range(k, min(n, k + 64))))
    # Writes in flight may be stamped out of issue order: done when B holds A's final value.
    final = await ga.get_field(1, "seq")
    while await gb.get_field(1, "seq") != final:
        await asyncio.sleep(0.001)
    took2 = time.perf_counter() - t1
    await a.close()
    await b.close()
    return {"p50_ms": statistics.median(lat) * 1e3, "p95_ms": sorted(lat)[int(0.95 * len(lat))] * 1e3, "updates_per_s": n / took, "pipelined_per_s": n / took2}


async def zenoh_side(n: int, lat_n: int, size: int) -> Dict[str, Any]:
    import zenoh

    port = free_port()

    def conf(listen: List[str], connect: List[str]) -> "zenoh.Config":
        c = zenoh.Config()
        c.insert_json5("mode", '"peer"')
        c.insert_json5("listen/endpoints", json.dumps(listen))
        c.insert_json5("connect/endpoints", json.dumps(connect))
        c.insert_json5("scouting/multicast/enabled", "false")
        return c

    sa = zenoh.open(conf([f"tcp/127.0.0.1:{port}"], []))
    sb = zenoh.open(conf([], [f"tcp/127.0.0.1:{port}"]))
    loop = asyncio.get_running_loop()
    q: "asyncio.Queue[int]" = asyncio.Queue()

    def on_sample(s: "zenoh.Sample") -> None:
        seq = int.from_bytes(bytes(s.payload.to_bytes())[:8], "little")
        loop.call_soon_threadsafe(q.put_nowait, seq)

    sub = sb.declare_subscriber("bench/r1", on_sample)
    pub = sa.declare_publisher("bench/r1")
    payload = os.urandom(size)

    async def seen(target: int, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while (await asyncio.wait_for(q.get(), max(0.01, end - time.monotonic()))) < target:
            pass

    for _ in range(100):  # until the subscription has reached the publisher
        pub.put((0).to_bytes(8, "little") + payload)
        try:
            await seen(0, timeout=0.1)
            break
        except asyncio.TimeoutError:
            pass
    lat: List[float] = []
    for i in range(1, lat_n + 1):
        t0 = time.perf_counter()
        pub.put(i.to_bytes(8, "little") + payload)
        await seen(i)
        lat.append(time.perf_counter() - t0)
    base = lat_n + 1
    t0 = time.perf_counter()
    for i in range(n):
        pub.put((base + i).to_bytes(8, "little") + payload)
        if i % 64 == 0:
            await asyncio.sleep(0)  # as the awaited Spook writes do, let the loop run
    await seen(base + n - 1, timeout=120)
    took = time.perf_counter() - t0
    del sub, pub
    sa.close()
    sb.close()
    return {"p50_ms": statistics.median(lat) * 1e3, "p95_ms": sorted(lat)[int(0.95 * len(lat))] * 1e3, "updates_per_s": n / took}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000, help="updates for the throughput run")
    p.add_argument("--latency", type=int, default=300, help="round trips for the latency run")
    p.add_argument("--payload", type=int, default=64, help="payload bytes per update")
    p.add_argument("--side", choices=["spook", "zenoh"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.side:
        f = spook_side if a.side == "spook" else zenoh_side
        print(json.dumps(asyncio.run(f(a.n, a.latency, a.payload))))
        return
    results = {}
    for side in ("zenoh", "spook"):
        out = subprocess.run([sys.executable, __file__, "--side", side, "--n", str(a.n), "--latency", str(a.latency), "--payload", str(a.payload)],
                             capture_output=True, text=True, timeout=600, cwd=tempfile.gettempdir())
        if out.returncode != 0:
            sys.exit(f"{side} side failed:\n{out.stderr[-2000:]}")
        results[side] = json.loads(out.stdout.strip().splitlines()[-1])
    s, z = results["spook"], results["zenoh"]
    print(f"Python write -> remote watch, {a.payload}-byte payload, loopback ({a.latency} round trips, {a.n} updates)")
    print(f"{'':24}{'spook':>12}{'zenoh':>12}{'spook/zenoh':>14}")
    for key, label in (("p50_ms", "latency p50 (ms)"), ("p95_ms", "latency p95 (ms)"), ("updates_per_s", "updates/s")):
        print(f"{label:24}{s[key]:>12.3f}{z[key]:>12.3f}{s[key] / z[key]:>14.2f}")
    # zenoh's puts do not wait for anything: against them, Spook with writes in flight too.
    print(f"{'updates/s, 64 in flight':24}{s['pipelined_per_s']:>12.3f}{z['updates_per_s']:>12.3f}{s['pipelined_per_s'] / z['updates_per_s']:>14.2f}")


if __name__ == "__main__":
    main()
