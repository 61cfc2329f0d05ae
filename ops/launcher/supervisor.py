"""Supervision of the three services as `python -m <svc>` processes.

It knows a service only by its module name and its `/ready/` endpoint, so it works
whatever the service does inside. Why it behaves as it does:

- A service that exits for any reason (even `kill -9`) is restarted after a backoff that
  doubles from 0.5 s up to 30 s and starts again from 0.5 s once it stayed up a minute.
  Losing nothing across the restart is the service's own job (journal replay, durable
  consumer); the supervisor only has to bring it back quickly and not spin on a crash
  loop. Before everything is first ready, a few quick exits in a row mean "it will not
  start": the launcher gives up with the end of the service's log.
- Stopping is SIGTERM (aiohttp's run_app shuts down gracefully on it), then SIGKILL after
  a grace period, while the output is still relayed so the last lines reach the log.
- Each service runs in its own process group: the terminal sends Ctrl-C to the whole
  foreground group, and the launcher, not the terminal, decides the order of shutdown.
- Every child (service or embedded server) is told by Linux to stop when the launcher
  dies, however it dies (`kill -9` included): nothing outlives it to hold ports, data
  folders or PostgreSQL's lock (`dies_with_launcher`).
- Output goes as is to `<run dir>/logs/<svc>.log` (JSON lines, since the services' stderr
  is not a terminal) and, rendered short, to the terminal prefixed by the service name.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp

from ops.launcher.terminal import render, say, shown, write
from ops.stack import HOST, log_tail

REPO = Path(__file__).resolve().parents[2]
PR_SET_PDEATHSIG = 1  # <sys/prctl.h>
READY_POLL = 0.25  # seconds between two rounds of /ready/ probes
BACKOFF_FIRST = 0.5  # seconds before the first restart of a service that exited
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # seconds of uptime after which an exit counts as a first failure again
STARTUP_CRASHES = 3  # exits before the first ready that mean "will not start", not "flaky"
STOP_GRACE = 10.0  # seconds a service gets to exit after SIGTERM before SIGKILL
LOG_TAIL = 30  # log lines shown when a service fails to start
LOG_LINE_LIMIT = 1 << 20  # longest service output line relayed (bytes)
# Ctrl-C, `kill`, and the terminal closing (SIGHUP would otherwise end the launcher on
# the spot and leave its children running, since they have process groups of their own).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Service:
    """One supervised `python -m <module>` and what the launcher knows of its state."""

    module: str
    port_var: str
    host: str
    port: int
    log_path: Path
    ready: bool = False
    ever_ready: bool = False
    crashes: int = 0  # exits in a row, each after less than STABLE_AFTER of uptime
    down_since: float | None = None  # monotonic time it last exited or stopped being ready

    @property
    def ready_url(self) -> str:
        return f"http://{self.host}:{self.port}/ready/"


def _exit_reason(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class Supervisor:
    """Runs the services until a signal: restarts those that exit, watches readiness."""

    def __init__(self, services: list[Service], env: Mapping[str, str], began: float) -> None:
        self.services = services
        self.env = dict(env)
        self.began = began  # monotonic time the launcher started: startup times count from it
        self._stop = asyncio.Event()

    async def run(self, ready_timeout: float) -> int:
        """0 after a signal, 1 if the services did not all become ready."""
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._supervise(svc)) for svc in self.services]
            tasks.append(group.create_task(self._watch_readiness()))
            code = await self._start_up(ready_timeout)
            if code == 0 and not self._stop.is_set():
                self._banner()
                await self._stop.wait()
            say("stopping the services")
            for task in tasks:
                task.cancel()
        return code

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stop.is_set():
            say("already stopping, please wait")
            return
        say(f"{sig.name}: stopping")
        self._stop.set()

    async def _start_up(self, ready_timeout: float) -> int:
        """Wait until every service is ready; 1 (with its log tail) if one is not."""
        deadline = self.began + ready_timeout
        while not all(svc.ready for svc in self.services):
            if self._stop.is_set():
                return 0
            looping = [svc for svc in self.services if svc.crashes >= STARTUP_CRASHES]
            late = [svc for svc in self.services if not svc.ready]
            if looping or time.monotonic() > deadline:
                for svc in looping or late:
                    why = (f"exited {svc.crashes} times while starting" if looping
                           else f"is not ready after {ready_timeout:g} s")
                    say(f"{svc.module} {why}; the end of {shown(svc.log_path)}:\n"
                        + log_tail(svc.log_path, LOG_TAIL))
                return 1
            await asyncio.sleep(0.05)
        say(f"all services ready, {time.monotonic() - self.began:.1f} s after start")
        return 0

    def _banner(self) -> None:
        def url(svc: Service, scheme: str, path: str) -> str:
            host = "localhost" if svc.host == HOST else svc.host
            return f"{scheme}://{host}:{svc.port}{path}"

        # Unprefixed, so that the URLs and the curl line copy cleanly.
        orders, trades, stream = self.services
        log_dir = shown(orders.log_path.parent)
        write("\n".join([
            "",
            f"  orders     {url(orders, 'http', '/orders/')}",
            f"  trades     {url(trades, 'http', '/trades/')}   "
            f"book {url(trades, 'http', '/orderbook/')}",
            f"  websocket  {url(stream, 'ws', '/ws/')}",
            f"  logs       {log_dir}/<service>.log",
            "",
            "  try:  curl -X POST " + url(orders, "http", "/orders/")
            + " -H 'Content-Type: application/json'"
            + """ -d '{"side": "buy", "quantity": 100, "price": 150.25}'""",
            "",
            "  Ctrl-C stops everything; ./ops/run again resumes where it stopped.",
            "",
            "",
        ]))

    async def _supervise(self, svc: Service) -> None:
        """Keep one service running until cancelled; being cancelled stops it."""
        while True:
            began = time.monotonic()
            code = await self._run_once(svc)
            svc.ready = False
            svc.down_since = time.monotonic()
            svc.crashes = 1 if svc.down_since - began >= STABLE_AFTER else svc.crashes + 1
            delay = min(BACKOFF_FIRST * 2 ** (svc.crashes - 1), BACKOFF_MAX)
            say(f"{svc.module} exited ({_exit_reason(code)}); restarting in {delay:g} s")
            await asyncio.sleep(delay)

    async def _run_once(self, svc: Service) -> int:
        """Run the service once, relaying its output, and return its exit code."""
        svc.log_path.parent.mkdir(parents=True, exist_ok=True)
        with svc.log_path.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", svc.module,
                cwd=REPO,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                limit=LOG_LINE_LIMIT,
                process_group=0,  # see the module docstring: Ctrl-C is ours alone
                **dies_with_launcher(signal.SIGTERM),
            )  # fmt: skip
            marker = f"---- {svc.module} started (pid {proc.pid}) at {datetime.now(UTC)}\n"
            log.write(marker.encode())
            say(f"{svc.module} started (pid {proc.pid}) on port {svc.port}")
            try:
                await self._relay(svc, proc, log)
                return await proc.wait()
            except asyncio.CancelledError:
                # Stop it, and keep relaying so its last words reach the log.
                await asyncio.gather(self._terminate(svc, proc), self._relay(svc, proc, log))
                raise

    async def _relay(
        self, svc: Service, proc: asyncio.subprocess.Process, log: BinaryIO
    ) -> None:
        """Copy the service's output to its log file as is and to the terminal rendered,
        until the service closes it."""
        assert proc.stdout is not None
        while True:
            try:
                raw = await proc.stdout.readline()
            except ValueError:  # longer than LOG_LINE_LIMIT: the reader dropped it
                raw = b"(an output line too long to relay was dropped)\n"
            if not raw:
                return
            log.write(raw)
            log.flush()
            say(render(raw.decode(errors="replace").rstrip("\n")), svc.module)

    async def _terminate(self, svc: Service, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM (graceful for aiohttp's run_app), then SIGKILL after STOP_GRACE."""
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE)
        except TimeoutError:
            say(f"{svc.module} did not stop within {STOP_GRACE:g} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        say(f"{svc.module} stopped ({_exit_reason(proc.returncode or 0)})")

    async def _watch_readiness(self) -> None:
        """Probe every /ready/ and report changes, e.g. a restarted service coming back."""
        timeout = aiohttp.ClientTimeout(total=1.0)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                states = await asyncio.gather(*(_probe(http, s.ready_url) for s in self.services))
                now = time.monotonic()
                for svc, ready in zip(self.services, states, strict=True):
                    if ready and not svc.ready:
                        if not svc.ever_ready:
                            say(f"{svc.module} ready after {now - self.began:.1f} s")
                        elif svc.down_since is not None:
                            say(f"{svc.module} ready again, {now - svc.down_since:.1f} s "
                                "after it went down")
                        svc.ever_ready, svc.down_since = True, None
                    elif svc.ready and not ready:
                        say(f"{svc.module} is no longer ready")
                        svc.down_since = now
                    svc.ready = ready
                await asyncio.sleep(READY_POLL)


async def _probe(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(url) as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


def dies_with_launcher(signal_number: int) -> dict[str, Any]:
    """Popen arguments that make Linux send the child `signal_number` when the launcher
    dies (PR_SET_PDEATHSIG, set between fork and exec); none elsewhere."""
    if not sys.platform.startswith("linux"):
        return {}
    libc = ctypes.CDLL(None, use_errno=True)
    launcher = os.getpid()

    def arrange() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(signal_number))
        if os.getppid() != launcher:  # it died before the request was in place
            os.kill(os.getpid(), signal_number)

    return {"preexec_fn": arrange}
