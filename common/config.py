"""Service configuration: one frozen Struct read from `EX_` environment variables.

Every field `name` comes from `EX_<NAME>` when set; the defaults match the local stack
that `./ops/run` starts. A value of the wrong type or out of range stops the service at
start-up, naming its variable, rather than misbehaving later (a batch of 0, a negative
timeout). Secrets (passwords in URLs, `EX_NATS_PASSWORD`, `EX_SECRET_KEY`) never appear
in `repr`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

PREFIX = "EX_"

Port = Annotated[int, msgspec.Meta(ge=1, le=65_535)]
Count = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
LogLevel = Annotated[str, msgspec.Meta(pattern="(?i)^(debug|info|warning|error|critical)$")]
AuthWindow = Annotated[float, msgspec.Meta(gt=0, le=60)]
# A rate limit in the `limits` library's notation: "30/second", "600/minute", "5000/hour".
RateLimit = Annotated[str, msgspec.Meta(pattern="^[1-9][0-9]{0,8}/(second|minute|hour)$")]
# Derived into the key that encrypts API secrets; 32 characters at least, e.g. the output
# of `openssl rand -hex 32`.
SecretKey = Annotated[str, msgspec.Meta(min_length=32)]
Replicas = Annotated[int, msgspec.Meta(ge=1, le=5)]  # JetStream's limit
# The lease's expiry: the takeover time is about this plus a poll, so a few seconds at most.
LeaseTtl = Annotated[float, msgspec.Meta(ge=0.5, le=10)]

SECRET_FIELDS = frozenset({"metrics_token", "nats_password", "secret_key"})


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    orders_port: Port = 8000
    trades_port: Port = 8001
    stream_port: Port = 8002
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str | None = None  # this service's NATS user; none: connect without one
    nats_password: str | None = None
    pg_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    redis_url: str = "redis://127.0.0.1:6379/0"
    instruments_file: str | None = None
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: LogLevel = "INFO"
    max_body_bytes: Count = 64 * 1024
    journal_timeout: Seconds = 2.0  # seconds a command waits for JetStream before 503
    snapshot_every: Count = 50_000  # commands between engine snapshots (see README)
    book_interval: Seconds = 0.1  # fastest book publication while it changes (seconds)
    book_heartbeat: Seconds = 1.0  # slowest book publication (seconds)
    query_timeout: Seconds = 2.0  # seconds svc_orders waits for svc_trades' read model
    projection_batch: Count = 8_000  # most journal messages per projection transaction
    ws_queue: Count = 256  # messages queued per WebSocket client before it is dropped
    ws_heartbeat: Seconds = 20.0  # WebSocket ping interval (seconds)
    ws_max_clients: Count = 5_000  # WebSocket connections; more are refused with 503
    auth: Literal["off", "on"] = "off"  # signed requests and rate limits
    secret_key: SecretKey | None = None  # encrypts API secrets at rest; needed with auth on
    auth_window: AuthWindow = 5.0  # seconds a signed timestamp may differ from our clock
    rate_private: RateLimit = "30/second"  # per key, on routes that need one
    rate_public: RateLimit = "20/second"  # per client address, on public routes
    rate_auth_failures: RateLimit = "10/minute"  # failed authentications per client address
    metrics_token: SecretKey | None = None  # bearer token /metrics asks for (see README)
    funding: Literal["off", "on"] = "off"  # orders backed by balances (see README, Accounts)
    nats_replicas: Replicas = 1  # copies of each stream and bucket (3 on a NATS cluster)
    lease_ttl: LeaseTtl = 1.5  # seconds the svc_orders leader's lease lasts unrenewed
    orders_url: str | None = None  # this svc_orders as clients reach it (NOT_LEADER answers)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={_hide_secret(name, getattr(self, name))!r}"
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
        named = re.sub(r"`\$\.(\w+)`", lambda m: PREFIX + m.group(1).upper(), str(error))
        raise ValueError(f"bad {PREFIX} setting: {named}") from None


def check_protected_mode(settings: Settings) -> None:
    """Refuse to serve what the contract forbids: without auth, only loopback may reach the
    services (anyone who can connect may act on any order); with auth, secrets cannot
    be stored without `EX_SECRET_KEY`. Raises ValueError naming the variable."""
    if settings.auth == "off" and not _is_loopback(settings.host):
        raise ValueError(f"{PREFIX}HOST={settings.host} is not a loopback address while "
                         f"{PREFIX}AUTH=off: set {PREFIX}AUTH=on to listen on it")
    if settings.auth == "on" and settings.secret_key is None:
        raise ValueError(f"{PREFIX}AUTH=on needs {PREFIX}SECRET_KEY (32 characters at least)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name (or "" for every interface): it may resolve anywhere
        return False


def _hide_secret(name: str, value: object) -> object:
    if name in SECRET_FIELDS and value is not None:
        return "***"
    if isinstance(value, str):
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", value)
    return value
