"""CPU time of the processes a benchmark runs, read from /proc (Linux).

The benchmarks print where the CPU went next to their throughput: on a 2-core machine
the figures only mean something when one can see which process was saturated and
whether something else competed for the cores.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Mapping
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_seconds(pid: int | None) -> float:
    """User + system CPU time of a running process (0 if unknown or gone)."""
    fields = None if pid is None else _stat(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def tree_seconds(pid: int | None) -> float:
    """CPU time of a server and all its workers: its own, that of the children it has
    waited for, and that of the children still running (PostgreSQL's backends)."""
    fields = None if pid is None else _stat(pid)
    if pid is None or fields is None:
        return 0.0
    own = sum(int(field) for field in fields[11:15]) / _TICKS
    children = Path(f"/proc/{pid}/task/{pid}/children")
    with contextlib.suppress(OSError):
        return own + sum(process_seconds(int(child)) for child in children.read_text().split())
    return own


def waited_children_seconds() -> float:
    """CPU time of this process's finished (waited-for) children, e.g. a load generator."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent not idle, over all cores (/proc/stat)."""
    with contextlib.suppress(OSError):
        fields = [int(field) for field in Path("/proc/stat").read_text().split()[1:9]]
        return (sum(fields) - fields[3] - fields[4]) / _TICKS
    return 0.0


class Meter:
    """CPU seconds spent since it was made by this process (named `this`), by each
    named server with its workers (those whose pid is known), and by the whole machine
    ("machine")."""

    def __init__(self, servers: Mapping[str, int | None], this: str) -> None:
        self.servers = {name: pid for name, pid in servers.items() if pid is not None}
        self.this = this
        self.start = self._now()

    def _now(self) -> dict[str, float]:
        now = {self.this: process_seconds(os.getpid())}
        now |= {name: tree_seconds(pid) for name, pid in self.servers.items()}
        now["machine"] = machine_busy_seconds()
        return now

    def seconds(self) -> dict[str, float]:
        now = self._now()
        return {name: now[name] - self.start[name] for name in now}
