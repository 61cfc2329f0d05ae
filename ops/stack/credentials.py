"""Passwords of the embedded servers: made at random once per data folder, kept in files
only their owner can read, so restarts keep them and nothing prints them."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def password(path: Path) -> str:
    """The password kept in `path`, made up the first time."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(path, secrets.token_hex(24))
    return path.read_text().strip()


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file no one but its owner can read, from its first byte on."""
    staging = path.with_name(path.name + ".new")
    staging.unlink(missing_ok=True)
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    staging.replace(path)
