"""What the launcher shows in the terminal: its own lines, and the services' JSON log
lines made short, each prefixed with who says it."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path


def say(text: str, name: str = "run") -> None:
    """One terminal line (or several) prefixed with who says it, UTC time for our own."""
    if name == "run":
        text = f"{datetime.now(UTC):%H:%M:%S} {text}"
    write("".join(f"{name:<10} | {line}\n" for line in text.splitlines() or [""]))


def write(text: str) -> None:
    """Write to the terminal, or to nothing once nobody reads it (`./ops/run | head`, a
    closed terminal): a failed write must never stop the launcher halfway through
    stopping the servers."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def shown(path: Path) -> str:
    """A path relative to the current folder when it is inside it: shorter to read."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def render(line: str) -> str:
    """A service's JSON log line made short for the terminal; any other text unchanged.
    The log file keeps the JSON."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict) or "event" not in record:
        return line
    stamp = str(record.pop("timestamp", ""))[11:19]
    level = str(record.pop("level", ""))
    event = record.pop("event")
    exception = record.pop("exception", None)
    extras = " ".join(f"{key}={value}" for key, value in record.items())
    text = f"{stamp} {level:<7} {event} {extras}".rstrip()
    return f"{text}\n{exception}" if exception else text
