"""Service configuration: one frozen Struct read from `EX_` environment variables.

Every field `name` comes from `EX_<NAME>` when set; the defaults match the local stack
that `./ops/run` starts. Secrets (passwords in URLs) never appear in `repr`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Literal

import msgspec

PREFIX = "EX_"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    orders_port: int = 8000
    trades_port: int = 8001
    stream_port: int = 8002
    nats_url: str = "nats://127.0.0.1:4222"
    pg_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    redis_url: str = "redis://127.0.0.1:6379/0"
    instruments_file: str | None = None
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    max_body_bytes: int = 64 * 1024
    journal_timeout: float = 2.0  # seconds a command waits for JetStream before 503
    snapshot_every: int = 50_000  # commands between engine snapshots (see README)
    book_interval: float = 0.1  # fastest book publication while it changes (seconds)
    book_heartbeat: float = 1.0  # slowest book publication (seconds)
    projection_batch: int = 2_000  # journal messages per projection transaction
    ws_queue: int = 256  # messages queued per WebSocket client before it is dropped
    ws_heartbeat: float = 20.0  # WebSocket ping interval (seconds)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={_hide_secret(getattr(self, name))!r}"
                           for name in self.__struct_fields__)
        return f"Settings({fields})"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from `EX_` variables; a malformed value raises with its variable's name."""
    env = os.environ if environ is None else environ
    raw = {name: env[PREFIX + name.upper()] for name in Settings.__struct_fields__
           if PREFIX + name.upper() in env}
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as error:
        raise ValueError(f"bad {PREFIX} setting: {error}") from None


def _hide_secret(value: object) -> object:
    if isinstance(value, str):
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", value)
    return value
