"""What the benchmarks share: their backing servers, the service under test as a
process, and percentiles."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path

from ops.stack import HOST, EmbeddedServer, log_tail

READY_TIMEOUT = 60.0  # seconds for a service to answer /ready/
STOP_TIMEOUT = 15.0  # seconds a process gets to exit after SIGTERM before SIGKILL
POLL = 0.05  # seconds between two readiness probes


def given_or_started(stack: ExitStack, given: str | None,
                     server: Callable[[], EmbeddedServer]) -> tuple[str, int | None]:
    """The address `given`, or that of a `server()` started now and stopped with `stack`,
    with its pid (None for a given one): a benchmark measures the servers it started and
    leaves alone those it was pointed at."""
    if given is not None:
        return given, None
    started = stack.enter_context(server())
    return started.address, started.pid


@contextlib.contextmanager
def service_process(name: str, command: list[str], env: Mapping[str, str], port: int,
                    log_path: Path, cwd: Path | None = None, cpus: set[int] | None = None,
                    ) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` (in `cwd` if given, on the CPUs `cpus` if given) until the block
    ends; yield once GET /ready/ on `port` answers 200."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=dict(env), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, cwd=cwd,
            preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus))
    try:
        def up() -> bool:
            if process.poll() is not None:
                raise SystemExit(f"{name} exited with code {process.returncode}; "
                                 f"log {log_path}:\n" + log_tail(log_path, 30))
            return ready(port)

        wait_until(f"{name} ready", up, log=log_path)
        yield process
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a running `process`, SIGKILL if it has not exited `STOP_TIMEOUT` later."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ready(port: int, path: str = "/ready/") -> bool:
    """Whether the service on `port` answers GET `path` with 200 now (one probe)."""
    with (contextlib.suppress(OSError),
          urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=1) as response):
        return bool(response.status == 200)
    return False


def wait_until(condition: str, check: Callable[[], bool], poll: float = POLL,
               log: Path | None = None) -> None:
    """Call `check` every `poll` seconds until it is true; SystemExit (with the tail of
    `log`, if given) if it is not within `READY_TIMEOUT`."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"not {condition} within {READY_TIMEOUT:g} s" + (
                "" if log is None else f"; log {log}:\n" + log_tail(log, 30)))
        time.sleep(poll)


def percentile(ordered: list[float], fraction: float) -> float:
    """The value below which `fraction` of the sorted sample lies (0 for no sample)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
