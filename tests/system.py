"""The whole system as a user runs it: `python -m ops.launcher` in a temporary folder on
free ports, with helpers to read what it printed and to find its processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import aiohttp

from ops.stack import free_port
from ops.stack.natsusers import ADMIN
from tests.helpers import eventually

REPO = Path(__file__).resolve().parent.parent
SERVICES = ("svc_orders", "svc_trades", "svc_stream")

@dataclass
class Launcher:
    """The running launcher process and everything it printed."""

    proc: asyncio.subprocess.Process
    ports: dict[str, int]
    run_dir: Path
    lines: list[str] = field(default_factory=list)

    @property
    def admin_nats_url(self) -> str:
        """The embedded NATS (its first node, if a cluster) as its `admin` user (the
        launcher's NATS admits only users)."""
        folders = [self.run_dir / "nats" / "users", self.run_dir / "nats-cluster" / "users"]
        password = next(f / ADMIN for f in folders if (f / ADMIN).exists()).read_text()
        return f"nats://{ADMIN}:{password.strip()}@127.0.0.1:{self.ports['EX_NATS_PORT']}"

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def output(self, lines: int = 60) -> str:
        return "\n".join(self.lines[-lines:])

    def pids_started(self, svc: str) -> list[int]:
        """Pids of `svc` in the order the launcher started them ("svc started (pid N)")."""
        prefix = f"{svc} started (pid "
        return [int(line.split(prefix)[1].split(")")[0]) for line in self.lines
                if prefix in line]


def descendants(root: int) -> set[int]:
    """Every process below `root`, from /proc (the test runs on Linux like the stack)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


@asynccontextmanager
async def paused(pid: int) -> AsyncIterator[None]:
    """The process stopped (SIGSTOP) while the block runs, continued (SIGCONT) after.
    The block starts once every thread of it has stopped: a signal is delivered a moment
    after kill() returns, and a running server would answer meanwhile."""
    os.kill(pid, signal.SIGSTOP)
    try:
        await eventually(partial(_stopped, pid), timeout=5, interval=0.005)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _stopped(pid: int) -> bool:
    states = [stat.read_text().rsplit(")", 1)[1].split()[0]
              for stat in Path(f"/proc/{pid}/task").glob("*/stat")]
    return bool(states) and all(state in "Tt" for state in states)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def status(http: aiohttp.ClientSession, url: str) -> int:
    """The status `url` answers a GET with, 0 if nothing answers there."""
    try:
        async with http.get(url) as response:
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


async def ready(http: aiohttp.ClientSession, port: int) -> bool:
    return await status(http, f"http://127.0.0.1:{port}/ready/") == 200


async def run_launcher(tmp_path: Path,
                       extra_env: Mapping[str, str] | None = None) -> AsyncIterator[Launcher]:
    """Start the launcher (with `extra_env` added to its environment); stop it (and
    anything it left) when the caller is done."""
    ports = {var: free_port() for var in (
        "EX_NATS_PORT", "EX_NATS_MONITOR_PORT", "EX_PG_PORT", "EX_REDIS_PORT",
        "EX_ORDERS_PORT", "EX_TRADES_PORT", "EX_STREAM_PORT")}
    # Only our EX_ variables: a developer's EX_NATS_URL would replace the embedded server.
    env = {key: value for key, value in os.environ.items() if not key.startswith("EX_")}
    env |= {var: str(port) for var, port in ports.items()}
    run_dir = tmp_path / "run"
    env["EX_RUN_DIR"] = str(run_dir)
    env |= extra_env or {}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ops.launcher", "--ready-timeout", "25",
        cwd=REPO, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    running = Launcher(proc, ports, run_dir)

    async def read() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            running.lines.append(raw.decode(errors="replace").rstrip())

    reader = asyncio.create_task(read())
    try:
        yield running
    finally:
        if proc.returncode is None:  # the test failed half-way: stop it, kill it if need be
            leftovers = descendants(proc.pid)
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                for pid in [proc.pid, *leftovers]:
                    if alive(pid):
                        os.kill(pid, signal.SIGKILL)
                await proc.wait()
        await reader
