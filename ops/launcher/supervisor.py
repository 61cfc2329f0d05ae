"""Supervision of the launcher's children: the embedded servers, then the three services.

It knows a child only by how to start it and how to tell it is ready (ops.launcher.children),
so servers and services are kept running the same way. Why it behaves as it does:

- A child that exits for any reason (even `kill -9`) is restarted after a backoff that
  doubles from 0.5 s up to 30 s and starts again from 0.5 s once it stayed up a minute.
  A server comes back on the same port with the same data folder; losing nothing across
  a restart is the child's own job (JetStream's store, PostgreSQL's WAL, the services'
  journal replay and durable consumer); the supervisor only has to bring it back quickly,
  reap the old process and not spin on a crash loop. Before a group is first ready, a
  few quick exits in a row mean "it will not start": the launcher gives up with the end
  of that child's log.
- The servers are started and ready before the services start, and stopped after them,
  so that the services drain to servers that are still up.
- Stopping is the child's stop signal (SIGTERM; SIGINT, "fast", for PostgreSQL), then
  SIGKILL after a grace period, while a service's output is still relayed so the last
  lines reach its log.
- A service's output goes as is to `<run dir>/logs/<svc>.log` and, rendered short, to the
  terminal prefixed by the service name; a server writes its own log in its data folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import BinaryIO

import aiohttp

from ops.launcher.children import Child, Service
from ops.launcher.terminal import render, say, shown, write
from ops.stack import HOST, log_tail

READY_POLL = 0.25  # seconds between two rounds of readiness probes
BACKOFF_FIRST = 0.5  # seconds before the first restart of a child that exited
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # seconds of uptime after which an exit counts as a first failure again
STARTUP_CRASHES = 3  # exits before the first ready that mean "will not start", not "flaky"
STOP_GRACE = 10.0  # seconds a child gets to exit after its stop signal before SIGKILL
LOG_TAIL = 30  # log lines shown when a child fails to start
# Ctrl-C, `kill`, and the terminal closing (SIGHUP would otherwise end the launcher on
# the spot and leave its children running, since they have process groups of their own).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _exit_reason(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class Supervisor:
    """Runs the servers and the services until a signal: restarts those that exit,
    watches readiness."""

    def __init__(self, env: Mapping[str, str], began: float,
                 servers_ready: Callable[[], Awaitable[None]] | None = None) -> None:
        self.env = dict(env)
        self.began = began  # monotonic time the launcher started: startup times count from it
        self.servers_ready = servers_ready  # run once the servers are up, before the services
        self._stop = asyncio.Event()

    async def run(self, servers: Sequence[Child], services: Sequence[Service],
                  ready_timeout: float) -> int:
        """0 after a signal, 1 if the children did not all become ready."""
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        async with self.supervising(servers, "servers", ready_timeout) as code:
            if code == 0 and not self._stop.is_set() and self.servers_ready is not None:
                await self.servers_ready()
            if code == 0 and not self._stop.is_set():
                async with self.supervising(services, "services", ready_timeout) as code:
                    if code == 0 and not self._stop.is_set():
                        self._banner(services)
                        await self._stop.wait()
                    say("stopping the services")
            if servers:
                say("stopping the servers")
        return code

    @contextlib.asynccontextmanager
    async def supervising(self, children: Sequence[Child], group_name: str,
                          ready_timeout: float) -> AsyncIterator[int]:
        """Keep `children` running while the block runs, and stop them when it ends. It
        starts once they are all ready (0) or one will not be (1, its log tail shown)."""
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._supervise(child)) for child in children]
            tasks.append(group.create_task(self._watch_readiness(children)))
            try:
                yield await self._start_up(children, group_name, ready_timeout)
            finally:
                for task in tasks:
                    task.cancel()

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stop.is_set():
            say("already stopping, please wait")
            return
        say(f"{sig.name}: stopping")
        self._stop.set()

    async def _start_up(self, children: Sequence[Child], group_name: str,
                        ready_timeout: float) -> int:
        """Wait until every child is ready; 1 (with its log tail) if one is not."""
        deadline = self.began + ready_timeout
        while not all(child.ready for child in children):
            if self._stop.is_set():
                return 0
            looping = [child for child in children if child.crashes >= STARTUP_CRASHES]
            late = [child for child in children if not child.ready]
            if looping or time.monotonic() > deadline:
                for child in looping or late:
                    why = (f"exited {child.crashes} times while starting" if looping
                           else f"is not ready after {ready_timeout:g} s")
                    say(f"{child.name} {why}; the end of {shown(child.log_path)}:\n"
                        + log_tail(child.log_path, LOG_TAIL))
                return 1
            await asyncio.sleep(0.05)
        say(f"all {group_name} ready, {time.monotonic() - self.began:.1f} s after start")
        return 0

    def _banner(self, services: Sequence[Service]) -> None:
        def url(svc: Service, scheme: str, path: str) -> str:
            host = "localhost" if svc.host == HOST else svc.host
            return f"{scheme}://{host}:{svc.port}{path}"

        # Unprefixed, so that the URLs and the curl line copy cleanly.
        orders, trades, stream = (next(svc for svc in services if svc.name == module)
                                  for module in ("svc_orders", "svc_trades", "svc_stream"))
        log_dir = shown(orders.log_path.parent)
        write("\n".join([
            "",
            f"  orders     {url(orders, 'http', '/orders/')}",
            f"  trades     {url(trades, 'http', '/trades/')}   "
            f"book {url(trades, 'http', '/orderbook/')}",
            f"  websocket  {url(stream, 'ws', '/ws/')}",
            f"  page       {url(stream, 'http', '/')}   the live exchange, in a browser",
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

    async def _supervise(self, child: Child) -> None:
        """Keep one child running until cancelled; being cancelled stops it."""
        while True:
            began = time.monotonic()
            code = await self._run_once(child)
            child.pid, child.ready = None, False
            child.down_since = time.monotonic()
            child.crashes = 1 if child.down_since - began >= STABLE_AFTER else child.crashes + 1
            delay = min(BACKOFF_FIRST * 2 ** (child.crashes - 1), BACKOFF_MAX)
            say(f"{child.name} exited ({_exit_reason(code)}); restarting in {delay:g} s")
            await asyncio.sleep(delay)

    async def _run_once(self, child: Child) -> int:
        """Run the child once, relaying its output if it has a pipe, and return its exit
        code once it has exited and been reaped."""
        child.log_path.parent.mkdir(parents=True, exist_ok=True)
        with child.log_path.open("ab") as log:
            proc = await child.spawn(self.env, log)
            child.pid = proc.pid
            marker = f"---- {child.name} started (pid {proc.pid}) at {datetime.now(UTC)}\n"
            log.write(marker.encode())
            log.flush()
            say(f"{child.name} started (pid {proc.pid}) {child.where()}")
            try:
                await self._relay(child, proc, log)
                return await proc.wait()
            except asyncio.CancelledError:
                # Stop it, and keep relaying so its last words reach the log.
                await asyncio.gather(self._terminate(child, proc),
                                     self._relay(child, proc, log))
                raise

    async def _relay(self, child: Child, proc: asyncio.subprocess.Process,
                     log: BinaryIO) -> None:
        """Copy a service's output to its log file as is and to the terminal rendered,
        until the service closes it (at once for a server: it writes its log itself)."""
        if proc.stdout is None:
            return
        while True:
            try:
                raw = await proc.stdout.readline()
            except ValueError:  # longer than the reader's limit: it dropped the line
                raw = b"(an output line too long to relay was dropped)\n"
            if not raw:
                return
            log.write(raw)
            log.flush()
            say(render(raw.decode(errors="replace").rstrip("\n")), child.name)

    async def _terminate(self, child: Child, proc: asyncio.subprocess.Process) -> None:
        """The child's stop signal, then SIGKILL after STOP_GRACE."""
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(child.stop_signal)
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE)
        except TimeoutError:
            say(f"{child.name} did not stop within {STOP_GRACE:g} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        say(f"{child.name} stopped ({_exit_reason(proc.returncode or 0)})")

    async def _watch_readiness(self, children: Sequence[Child]) -> None:
        """Probe readiness and report changes, e.g. a restarted child coming back."""
        timeout = aiohttp.ClientTimeout(total=1.0)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                probed = [child for child in children
                          if child.pid is not None
                          and (child.probe_while_ready or not child.ready)]
                pids = [child.pid for child in probed]
                states = await asyncio.gather(*(child.probe(http) for child in probed))
                now = time.monotonic()
                for child, pid, ready in zip(probed, pids, states, strict=True):
                    if child.pid != pid:  # it exited while being probed: the answer is stale
                        continue
                    if ready and not child.ready:
                        if not child.ever_ready:
                            say(f"{child.name} ready after {now - self.began:.1f} s")
                        elif child.down_since is not None:
                            say(f"{child.name} ready again, {now - child.down_since:.1f} s "
                                "after it went down")
                        child.ever_ready, child.down_since = True, None
                    elif child.ready and not ready:
                        say(f"{child.name} is no longer ready")
                        child.down_since = now
                    child.ready = ready
                await asyncio.sleep(READY_POLL)
