"""How every service (and ops tool) connects to NATS: the options written once.

With `EX_NATS_USER` set, the connection logs in as that user and takes its inboxes
under `_INBOX.<user>.`, the only inboxes its NATS permissions let it read (see
`ops.stack.natsusers`); without, it connects as anyone, as to a server without users.
A service never gives up reconnecting: NATS coming back is what it waits for.
"""

from __future__ import annotations

from typing import Any

import nats
from nats.aio.client import Client as Nats

from common.config import Settings


def inbox_prefix(user: str) -> str:
    """Where `user`'s replies and JetStream deliveries arrive."""
    return f"_INBOX.{user}"


async def connect(settings: Settings, name: str, **options: Any) -> Nats:
    """A connection named `name` (it shows in the server's monitor); `options` are
    nats-py's, e.g. callbacks."""
    login: dict[str, Any] = {}
    if settings.nats_user is not None:
        login = {"user": settings.nats_user, "password": settings.nats_password or "",
                 "inbox_prefix": inbox_prefix(settings.nats_user)}
    return await nats.connect(servers(settings.nats_url), name=name,
                              max_reconnect_attempts=-1, **login, **options)


def servers(nats_url: str) -> list[str]:
    """`EX_NATS_URL` may name every node of a cluster, comma-separated: a service then
    connects to whichever is up, and moves to another when its node goes."""
    return [url.strip() for url in nats_url.split(",") if url.strip()]
