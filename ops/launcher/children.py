"""The two kinds of process the supervisor keeps running: an embedded server (NATS,
PostgreSQL, Redis) and a service (`python -m <svc>`). Each says how to start it, how
to tell it is ready and how to stop it; the supervisor does the rest the same way for
both.

Every child runs in its own process group, so that the terminal's Ctrl-C reaches only
the launcher and the launcher decides the order of shutdown, and is told by Linux to
stop when the launcher dies, however it dies (`kill -9` included): nothing outlives it
to hold ports, data folders or PostgreSQL's lock (`dies_with_launcher`).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp

from ops.launcher.terminal import shown
from ops.stack import HOST, EmbeddedServer

REPO = Path(__file__).resolve().parents[2]
PR_SET_PDEATHSIG = 1  # <sys/prctl.h>
LOG_LINE_LIMIT = 1 << 20  # longest service output line relayed (bytes)


class Child(ABC):
    """One supervised process and what the supervisor knows of its state."""

    # Whether readiness is probed while ready too: a service may stop being ready while
    # it runs (e.g. fenced); a server is ready from its first answer until it exits.
    probe_while_ready = True

    def __init__(self, name: str, log_path: Path, stop_signal: int) -> None:
        self.name = name
        self.log_path = log_path
        self.stop_signal = stop_signal
        self.pid: int | None = None  # of the running process
        self.ready = False
        self.ever_ready = False
        self.crashes = 0  # exits in a row, each after a short uptime
        self.down_since: float | None = None  # monotonic time it went down

    @abstractmethod
    async def spawn(self, env: Mapping[str, str], log: BinaryIO) -> asyncio.subprocess.Process:
        """Start the process; its output goes to `log`, or to a pipe the supervisor relays."""

    @abstractmethod
    async def probe(self, http: aiohttp.ClientSession) -> bool:
        """Whether it answers as ready now."""

    @abstractmethod
    def where(self) -> str:
        """Where it listens, for the line that says it started."""


class Service(Child):
    """`python -m <module>`, ready when GET /ready/ answers 200; stopped by SIGTERM, on
    which aiohttp's run_app shuts down gracefully. Its output (JSON lines, since its
    stderr is not a terminal) is relayed to its log and to the terminal."""

    def __init__(self, module: str, port_var: str, host: str, port: int,
                 log_path: Path, name: str | None = None) -> None:
        super().__init__(name or module, log_path, signal.SIGTERM)
        self.module = module
        self.port_var = port_var
        self.host = host
        self.port = port
        self.env: dict[str, str] = {}  # its own variables, e.g. its NATS login
        self.probe_path = "/ready/"

    @property
    def ready_url(self) -> str:
        return f"http://{self.host}:{self.port}{self.probe_path}"

    async def spawn(self, env: Mapping[str, str], log: BinaryIO) -> asyncio.subprocess.Process:
        return await _spawn([sys.executable, "-m", self.module], {**env, **self.env},
                            asyncio.subprocess.PIPE, self.stop_signal, cwd=REPO,
                            limit=LOG_LINE_LIMIT)

    async def probe(self, http: aiohttp.ClientSession) -> bool:
        try:
            async with http.get(self.ready_url) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    def where(self) -> str:
        return f"on port {self.port}"


class Server(Child):
    """An embedded server, restarted on the same port and data folder; it writes its log
    itself, in its data folder."""

    probe_while_ready = False

    def __init__(self, server: EmbeddedServer) -> None:
        super().__init__(server.name, server.log_path, server.stop_signal)
        self.server = server

    async def spawn(self, env: Mapping[str, str], log: BinaryIO) -> asyncio.subprocess.Process:
        await asyncio.to_thread(self.server.prepare)
        return await _spawn(self.server.command(), env, log, self.stop_signal,
                            **self.server.popen_extra())

    async def probe(self, http: aiohttp.ClientSession) -> bool:
        return await asyncio.to_thread(self.server.is_ready)

    def where(self) -> str:
        return f"on {HOST}:{self.server.port}, data in {shown(self.server.data_dir)}"


async def _spawn(command: list[str], env: Mapping[str, str], stdout: int | BinaryIO,
                 stop_signal: int, **extra: Any) -> asyncio.subprocess.Process:
    program, *arguments = command
    return await asyncio.create_subprocess_exec(
        program, *arguments,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=asyncio.subprocess.STDOUT,
        process_group=0,  # see the module docstring: Ctrl-C is the launcher's alone
        **dies_with_launcher(stop_signal),
        **extra,
    )


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
