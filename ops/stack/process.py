"""One embedded server process: its port, data folder, log, start and stop.

start() returns only once the server answers and stop() shuts it down cleanly, so a test
or a benchmark can use a server as a context manager. The port is fixed at construction
so that a restart comes back on the same address.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Self

HOST = "127.0.0.1"


class ServerStartError(RuntimeError):
    """A server did not come up; the message carries the tail of its log."""


_handed_out: set[int] = set()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago and that this process
    has not handed out before: the kernel may give a just-released port to the next
    call, and two servers (or a server's client and monitor ports) would then collide."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log, for an error message about a process that failed."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log yet)"
    return "\n".join(text.splitlines()[-lines:])


class EmbeddedServer:
    """One server process: subclasses say how to run it and how to tell it is ready."""

    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(self, data_dir: Path, port: int | None = None, start_timeout: float = 30.0):
        self.data_dir = Path(data_dir).resolve()
        # The port is fixed at construction so a restart comes back on the same address.
        self.port = port if port is not None else free_port()
        self.start_timeout = start_timeout
        self.log_path = self.data_dir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    # -- what subclasses provide (public: the launcher runs servers under its supervisor) --
    @property
    def address(self) -> str:
        """What a client connects to (a URL or DSN)."""
        raise NotImplementedError

    def command(self) -> list[str]:
        """The server's command line; the same at every start."""
        raise NotImplementedError

    def is_ready(self) -> bool:
        """True once the server answers (blocks for a fraction of a second at most)."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Setup before every start, a no-op once done (e.g. initdb)."""

    def popen_extra(self) -> dict[str, Any]:
        """Further subprocess.Popen arguments (e.g. the user PostgreSQL runs as)."""
        return {}

    # -- lifecycle ----------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    def start(self) -> Self:
        """Start the process and block until it answers; raise ServerStartError if not."""
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with self.log_path.open("ab") as log:
            log.write(f"---- starting {self.name} on {HOST}:{self.port}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                **self.popen_extra(),
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                self._fail(f"exited with code {code} while starting")
            if self.is_ready():
                return
            time.sleep(0.02)
        self.kill()
        self._fail(f"did not answer within {self.start_timeout:.0f}s")

    def _fail(self, what: str) -> NoReturn:
        raise ServerStartError(
            f"{self.name} on {HOST}:{self.port} {what}; log {self.log_path}:\n"
            + log_tail(self.log_path)
        )

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful shutdown; escalate to SIGKILL if it does not exit in time."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(self.stop_signal)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL, for simulating a crash; the data folder is left as the crash left it."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {HOST}:{self.port} running={self.running}>"


