"""The extension inside a Python process: threads do not pile up over open/close cycles, a
script that never closes still exits promptly, blocking calls release the GIL, and no input
aborts the interpreter."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import spook.sync

from conftest import node_kw


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def run_script(code: str, cwd: Path, timeout: float = 60) -> "subprocess.CompletedProcess[str]":
    # In `cwd`, not the sources' folder: python -c puts its folder first on sys.path.
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def test_thread_count_is_flat_over_open_close_cycles(workdir: Path) -> None:
    # In a process of its own, so that other tests' threads do not count.
    out = run_script(f"""
        import asyncio, os, spook
        def threads(): return len(os.listdir("/proc/self/task"))
        async def main():
            counts = []
            for i in range(20):
                c = await spook.embedded(ledger="{workdir}/n.spookdb")
                await c.create_group(f"g{{i}}")
                await c.group(f"g{{i}}").set(1, "battery", 0.5)
                await c.close()
                await asyncio.sleep(0.05)
                counts.append(threads())
            print(counts)
        asyncio.run(main())
    """, workdir, timeout=120)
    assert out.returncode == 0, out.stderr
    counts = eval(out.stdout.strip().splitlines()[-1])
    assert len(counts) == 20 and counts[-1] == counts[0], f"threads after each close: {counts}"


def test_script_that_never_closes_exits_within_2_s(workdir: Path) -> None:
    for mode in ("async", "sync"):
        code = {
            "async": f"""
                import asyncio, spook
                async def main():
                    c = await spook.embedded(ledger="{workdir}/{mode}.spookdb")
                    await c.create_group("g")
                    w = await c.group("g").watch()
                    await c.group("g").set(1, "battery", 0.5)
                    print("done", flush=True)
                asyncio.run(main())
            """,
            "sync": f"""
                import spook.sync as spook
                c = spook.embedded(ledger="{workdir}/{mode}.spookdb")
                c.create_group("g")
                w = c.group("g").watch()
                c.group("g").set(1, "battery", 0.5)
                print("done", flush=True)
            """,
        }[mode]
        p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=workdir)
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line.strip() == "done", p.stderr.read() if p.stderr else ""
        t0 = time.monotonic()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            raise AssertionError(f"{mode}: the script did not exit within 10 s of its last line")
        took = time.monotonic() - t0
        assert p.returncode == 0 and took < 2.0, f"{mode}: exit {p.returncode} after {took:.2f} s"


def test_blocking_calls_release_the_gil(workdir: Path) -> None:
    absent = spook.Client.key_id(str(workdir / "absent.key"))
    with spook.sync.embedded(**node_kw(workdir, "gil")) as c:
        c.allow(absent)
        c.create_group("pair", members=[absent], kind="serial")
        ticks = 0
        stop = threading.Event()

        def count() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                time.sleep(0.001)

        t = threading.Thread(target=count)
        t.start()
        t0 = time.monotonic()
        # No majority: the call blocks until the deadline, about 1 s.
        outcome = c.group("pair").tx().set(1, "owner", "x").deadline_ms(1000).submit()
        waited = time.monotonic() - t0
        stop.set()
        t.join()
        assert isinstance(outcome, spook.Decohered) and waited >= 0.9
        # ~1 tick per ms while we waited, if the GIL was free (at least half of that).
        assert ticks > 450, f"{ticks} ticks in {waited:.2f} s: the call held the GIL"


def test_random_input_never_aborts_the_interpreter(workdir: Path) -> None:
    seed = int(os.environ.get("SPOOK_SEED", random.randrange(1 << 32)))
    print(f"seed {seed} (SPOOK_SEED={seed} re-runs it)")
    out = run_script(f"""
        import random, spook.sync as spook
        rng = random.Random({seed})
        c = spook.embedded(ledger="{workdir}/fuzz.spookdb")
        c.create_group("g", kind="serial", schema=spook.schema({{"a": "any", "v": "vec3", "p": "pose", "s": "str", "b": "bytes", "i": "i64"}}))
        g = c.group("g")
        atoms = [None, True, 0, -1, 2**63, 2**64, -2**63, 1.5, float("nan"), float("inf"), "", "x" * 70000, b"\\xff" * 10,
                 bytearray(b"ab"), [], {{}}, {{1: 2}}, (1, 2, 3), [1, "a"], object(), {{"k": {{"k": [1]}}}}, 3j, ..., range(3)]
        def value(d=0):
            r = rng.random()
            if d < 3 and r < 0.2: return [value(d + 1) for _ in range(rng.randrange(4))]
            if d < 3 and r < 0.3: return {{str(i): value(d + 1) for i in range(rng.randrange(3))}}
            return rng.choice(atoms)
        outcomes = {{}}
        for n in range(600):
            reg = rng.choice([1, "r", -5, 2**40, None, 1.5, "ä" * 300])
            field = rng.choice(["a", "v", "p", "s", "b", "i", "missing", ""])
            try:
                if rng.random() < 0.5: g.set(reg, field, value())
                elif rng.random() < 0.5: g.write(reg, rng.choice([{{field: value()}}, value()]))
                else: g.tx().when_equals(reg, field, value()).set(reg, field, value()).submit()
                outcomes["ok"] = outcomes.get("ok", 0) + 1
            except spook.BadValue: outcomes["BadValue"] = outcomes.get("BadValue", 0) + 1
            except spook.SpookError as e: outcomes[type(e).__name__] = outcomes.get(type(e).__name__, 0) + 1
            except TypeError: outcomes["TypeError"] = outcomes.get("TypeError", 0) + 1
        g.set("after", "s", "still here")
        assert g.get("after") == {{"s": "still here"}}
        c.close()
        print(outcomes)
    """, workdir, timeout=300)
    assert out.returncode == 0, f"seed {seed}: exit {out.returncode}\n{out.stderr[-3000:]}"
    print(out.stdout)
