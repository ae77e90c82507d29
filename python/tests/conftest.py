"""Fixtures of the Python suite: real `spookd` processes (the binaries `cargo` built into the
workspace's target/), Python node processes (tests/node_proc.py) driven over stdin, and
helpers to wait for a condition with a bound."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def bin_dir() -> Path:
    """Where `spookd` and `spook` are: $SPOOK_BIN_DIR, else target/debug (built if missing)."""
    d = Path(os.environ.get("SPOOK_BIN_DIR", REPO / "target" / "debug"))
    if not (d / "spookd").exists() or not (d / "spook").exists():
        subprocess.run(["cargo", "build", "-q", "-p", "spook-node", "--bins"], cwd=REPO, check=True)
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def eventually(what: str, within: float, f: Callable[[], bool], every: float = 0.1) -> None:
    """Poll `f` until it holds; fail after `within` seconds (a bounded loop)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        if f():
            return
        time.sleep(every)
    raise AssertionError(f"{what}: not within {within} s")


class Spookd:
    """A `spookd` process with its own folder, config, ledger and control socket."""

    def __init__(self, root: Path, name: str, port: int, connect: List[int] = [], timing: str = "") -> None:
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.config = self.dir / "spookd.toml"
        self.socket = self.dir / "spookd.sock"
        conn = ", ".join(f'"tcp/127.0.0.1:{p}"' for p in connect)
        self.config.write_text(
            f'[node]\nledger = "{self.dir}/node.spookdb"\ncontrol = "{self.socket}"\nlog = "info"\n'
            f'[zenoh]\nlisten = ["tcp/127.0.0.1:{port}"]\nconnect = [{conn}]\n[metrics]\nlisten = ""\n{timing}'
        )
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def locator(self) -> str:
        return f"tcp/127.0.0.1:{self.port}"

    def spook(self, *args: str) -> Any:
        out = subprocess.run([str(bin_dir() / "spook"), "-c", str(self.config), "--json", *args], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"spook {' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
        return json.loads(out.stdout) if out.stdout.strip() else {}

    def start(self) -> None:
        log = open(self.dir / "spookd.log", "wb")
        self.proc = subprocess.Popen([str(bin_dir() / "spookd"), "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        eventually(f"spookd {self.dir.name} answers", 30, lambda: self.socket.exists() and self._answers())

    def _answers(self) -> bool:
        try:
            self.spook("id")
            return True
        except Exception:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class NodeProc:
    """A Python process running an embedded node (tests/node_proc.py), one JSON command per
    line on its stdin, one JSON answer per line on its stdout."""

    def __init__(self, root: Path, name: str, connect: List[str], port: int = 0) -> None:
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "node_proc.py"), str(self.dir / "node.spookdb"), json.dumps(connect), str(port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.dir / "node.log", "wb"), text=True,
        )
        self.id: str = self.ask("id")

    def ask(self, op: str, *args: Any) -> Any:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps([op, *args]) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"node process {self.dir.name} ended: see {self.dir / 'node.log'}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{op}: {answer['error']}")
        return answer["ok"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask("close")
            except Exception:
                pass
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


@pytest.fixture
def spookds(workdir: Path) -> Iterator[List[Spookd]]:
    started: List[Spookd] = []
    yield started
    for s in started:
        s.stop()


@pytest.fixture
def node_procs() -> Iterator[List[NodeProc]]:
    started: List[NodeProc] = []
    yield started
    for p in started:
        p.stop()


def skip_or_fail(why: str) -> None:
    """A real part that cannot run: a failure under CI=true, a skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"cannot run under CI: {why}")
    pytest.skip(why)


def node_kw(root: Path, name: str, **kw: Any) -> Dict[str, Any]:
    """Keyword arguments for `spook.embedded` with a ledger in `root/name`."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    return {"ledger": str(d / "node.spookdb"), **kw}


