"""./ops/run's launcher as a user runs it: one real process starting real servers and the
three services, in a temporary data folder on free ports.

It must get everything ready, bring back a service killed with SIGKILL, and on Ctrl-C
(SIGINT) stop everything, exit 0 and leave no process behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from ops.stack import free_port
from tests.helpers import eventually

REPO = Path(__file__).resolve().parent.parent
SERVICES = ("svc_orders", "svc_trades", "svc_stream")

pytestmark = pytest.mark.integration


def _services_import() -> str | None:
    """None if `python -m <svc>` can run for all three, else why not. In a subprocess,
    since the services are being written while this test exists."""
    modules = ", ".join(f"{svc}.__main__" for svc in SERVICES)
    result = subprocess.run([sys.executable, "-c", f"import {modules}"], cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=False)
    if result.returncode == 0:
        return None
    return "the three services do not all import yet: " + result.stderr.strip()[-500:]


@dataclass
class Launcher:
    """The running launcher process and everything it printed."""

    proc: asyncio.subprocess.Process
    ports: dict[str, int]
    lines: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "\n".join(self.lines[-60:])

    def pids_started(self, svc: str) -> list[int]:
        """Pids of `svc` in the order the launcher started them ("svc started (pid N)")."""
        prefix = f"{svc} started (pid "
        return [int(line.split(prefix)[1].split(")")[0]) for line in self.lines
                if prefix in line]


def _descendants(root: int) -> set[int]:
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


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def _ready(http: aiohttp.ClientSession, port: int) -> bool:
    try:
        async with http.get(f"http://127.0.0.1:{port}/ready/") as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


@pytest.fixture
async def launcher(tmp_path: Path) -> AsyncIterator[Launcher]:
    reason = _services_import()
    if reason:
        pytest.skip(reason)
    ports = {var: free_port() for var in (
        "EX_NATS_PORT", "EX_NATS_MONITOR_PORT", "EX_PG_PORT", "EX_REDIS_PORT",
        "EX_ORDERS_PORT", "EX_TRADES_PORT", "EX_STREAM_PORT")}
    # Only our EX_ variables: a developer's EX_NATS_URL would replace the embedded server.
    env = {key: value for key, value in os.environ.items() if not key.startswith("EX_")}
    env |= {var: str(port) for var, port in ports.items()}
    env["EX_RUN_DIR"] = str(tmp_path / "run")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ops.launcher", "--ready-timeout", "25",
        cwd=REPO, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    running = Launcher(proc, ports)

    async def read() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            running.lines.append(raw.decode(errors="replace").rstrip())

    reader = asyncio.create_task(read())
    try:
        yield running
    finally:
        if proc.returncode is None:  # the test failed half-way: stop it, kill it if need be
            leftovers = _descendants(proc.pid)
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                for pid in [proc.pid, *leftovers]:
                    if _alive(pid):
                        os.kill(pid, signal.SIGKILL)
                await proc.wait()
        await reader


async def test_runs_restarts_a_killed_service_and_stops_cleanly(launcher: Launcher) -> None:
    ports = launcher.ports
    service_ports = [ports["EX_ORDERS_PORT"], ports["EX_TRADES_PORT"], ports["EX_STREAM_PORT"]]

    def said(text: str) -> bool:
        return any(text in line for line in launcher.lines)

    def says(text: str) -> bool:
        """For eventually(): fail at once, not at the timeout, if the launcher is gone."""
        if launcher.proc.returncode is not None:
            pytest.fail(f"launcher exited with {launcher.proc.returncode}:\n"
                        + launcher.output())
        return said(text)

    await eventually(lambda: says("all services ready"), timeout=30)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        for port in service_ports:
            assert await _ready(http, port), launcher.output()

        before = _descendants(launcher.proc.pid)
        [first] = launcher.pids_started("svc_orders")
        os.kill(first, signal.SIGKILL)

        await eventually(lambda: len(launcher.pids_started("svc_orders")) == 2, timeout=10)
        await eventually(lambda: says("svc_orders ready again"), timeout=15)
        assert await _ready(http, ports["EX_ORDERS_PORT"])
    assert said("svc_orders exited (killed by SIGKILL)")
    second = launcher.pids_started("svc_orders")[1]
    assert second != first
    processes = before | _descendants(launcher.proc.pid)
    assert second in processes

    launcher.proc.send_signal(signal.SIGINT)
    code = await asyncio.wait_for(launcher.proc.wait(), 30)
    assert code == 0, launcher.output()
    await eventually(lambda: not [pid for pid in processes if _alive(pid)], timeout=5)
    for svc in SERVICES:
        assert said(f"{svc} stopped (exit code 0)"), launcher.output()
    assert launcher.lines[-1].endswith("stopped"), launcher.output()
