"""NATS users: who may publish and subscribe what, and their passwords.

Without users anyone who reaches NATS can write the journal or the market data (one
forged `md.trades` message with a huge seq silenced every trade feed; one garbage
journal message stopped svc_orders). So each service has a user with only the subjects
it needs, and an `admin` user (ops tools, tests) may do everything. The table below is
the one source: the embedded nats-server's config is rendered from it with the
passwords of its data folder, and `ops/compose/nats.conf` is the same text with
environment references (a test keeps the two equal).

A user's inboxes are `_INBOX.<user>.*` (`common.natsconn` sets nats-py's inbox prefix),
so no service can read another's replies: JetStream API answers, acknowledgements,
order queries. Answers to requests go out under `allow_responses`, which lets a user
publish once to the reply subject of a request it received, and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from common import subjects
from ops.stack import credentials

ADMIN = "admin"
SERVICES = ("svc_orders", "svc_trades", "svc_stream")
USERS = (*SERVICES, ADMIN)

_API = "$JS.API"
EVENTS = subjects.STREAM
KEYS = subjects.KEYS_STREAM
SNAPSHOTS = f"OBJ_{subjects.SNAPSHOT_BUCKET}"  # the stream behind the snapshot store
LEADER = f"KV_{subjects.LEADER_BUCKET}"  # the stream behind svc_orders' leader lease


def _create(stream: str) -> list[str]:
    """Create the stream if missing (same config or an error: nothing existing changes)."""
    return [f"{_API}.STREAM.CREATE.{stream}"]


def _read(stream: str) -> list[str]:
    """Look at a stream, read it with ephemeral ordered consumers, get single messages."""
    return [f"{_API}.STREAM.INFO.{stream}", f"{_API}.CONSUMER.CREATE.{stream}",
            f"{_API}.CONSUMER.CREATE.{stream}.>", f"{_API}.CONSUMER.DELETE.{stream}.>",
            f"{_API}.CONSUMER.INFO.{stream}.>",
            f"{_API}.STREAM.MSG.GET.{stream}", f"{_API}.DIRECT.GET.{stream}",
            f"{_API}.DIRECT.GET.{stream}.>"]


_FLOW_CONTROL = "$JS.FC.>"  # ordered consumers answer JetStream's flow-control probes
_KEYS_READ = [*_create(KEYS), *_read(KEYS)]  # every service follows the API keys

# user -> {"publish": [...], "subscribe": [...]}: allow lists, anything else is refused.
PERMISSIONS: dict[str, dict[str, list[str]]] = {
    "svc_orders": {
        "publish": [
            subjects.EVENTS_WILDCARD,  # the journal: only svc_orders appends
            subjects.TAKEOVER,  # a new leader fences the old one's appends
            "md.>",  # market data
            "ex.query.>",  # asks svc_trades for order history
            *_create(EVENTS), *_read(EVENTS),  # recovery replays the journal
            # adds the takeover subject (and replicas) to a journal made before them
            f"{_API}.STREAM.UPDATE.{EVENTS}",
            *_create(LEADER), *_read(LEADER), f"$KV.{subjects.LEADER_BUCKET}.>",  # the lease
            *_create(SNAPSHOTS), *_read(SNAPSHOTS),
            f"{_API}.STREAM.NAMES",  # nats-py finds the snapshots' stream by subject
            f"{_API}.STREAM.PURGE.{SNAPSHOTS}",  # a new snapshot drops the old chunks
            f"$O.{subjects.SNAPSHOT_BUCKET}.>",
            *_KEYS_READ, _FLOW_CONTROL,
        ],
        "subscribe": [subjects.BOOK_REQUEST,
                      subjects.ORDERS_INTEREST,  # which users' order updates svc_stream wants
                      subjects.TRANSFER_REQUEST,  # deposits and withdrawals from svc_trades
                      subjects.TRADES_WILDCARD,  # a standby notes what the leader published
                      "_INBOX.svc_orders.>"],
    },
    "svc_trades": {
        "publish": [
            "ex.settlements.>",
            subjects.BOOK_REQUEST,  # asks svc_orders for a book missing from the cache
            subjects.TRANSFER_REQUEST,  # has svc_orders make a deposit or withdrawal
            *_create(EVENTS),  # before svc_orders ever ran
            f"{_API}.STREAM.INFO.{EVENTS}",
            f"{_API}.CONSUMER.DURABLE.CREATE.{EVENTS}.>",  # its consumer, made at each start
            f"{_API}.CONSUMER.DELETE.{EVENTS}.>", f"{_API}.CONSUMER.INFO.{EVENTS}.>",
            f"{_API}.CONSUMER.MSG.NEXT.{EVENTS}.>",
            f"$JS.ACK.{EVENTS}.>",
            *_KEYS_READ, f"$KV.{subjects.KEYS_BUCKET}.>",  # creates and revokes keys
            f"{_API}.STREAM.UPDATE.{KEYS}",  # more copies for a bucket made with fewer
            _FLOW_CONTROL,
        ],
        "subscribe": ["ex.query.>", "_INBOX.svc_trades.>"],
    },
    "svc_stream": {
        "publish": [subjects.ORDERS_INTEREST,  # the users whose orders its clients watch
                    subjects.CANDLES_QUERY,  # asks svc_trades for candle snapshots
                    *_KEYS_READ, _FLOW_CONTROL],
        "subscribe": ["md.>", "_INBOX.svc_stream.>"],
    },
    ADMIN: {"publish": [">"], "subscribe": [">"]},
}
RESPONDERS = frozenset({"svc_orders", "svc_trades"})  # answer requests (allow_responses)


def authorization(passwords: Mapping[str, str]) -> str:
    """nats-server's `authorization` block; each value of `passwords` is written as is
    (a quoted literal, or `$VARIABLE` to read it from the environment)."""
    lines = ["authorization {", "  users = ["]
    for user in USERS:
        permissions = PERMISSIONS[user]
        lines.append(
            f"    {{user: {json.dumps(user)}, password: {passwords[user]}, permissions: {{")
        for kind in ("publish", "subscribe"):
            lines.append(f"      {kind}: {{allow: [")
            lines += [f"        {json.dumps(subject)}" for subject in permissions[kind]]
            lines.append("      ]}")
        if user in RESPONDERS:
            lines.append("      allow_responses: true")
        lines.append("    }}")
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def environment_variable(user: str) -> str:
    """The variable that holds `user`'s password in compose (`NATS_SVC_ORDERS_PASSWORD`)."""
    return f"NATS_{user.upper()}_PASSWORD"


def compose_config() -> str:
    """`ops/compose/nats.conf`: the passwords come from the nats container's environment."""
    return (COMPOSE_HEADER + "\n"
            + authorization({user: f"${environment_variable(user)}" for user in USERS}))


COMPOSE_HEADER = """\
# nats-server's users for compose.yaml, rendered from the table in ops/stack/natsusers.py
# (a test compares the two); after a change to the table:
#   .venv/bin/python -c 'import ops.stack.natsusers as n; print(n.compose_config(), end="")' \\
#     > ops/compose/nats.conf
# Each password comes from the nats container's environment (compose.yaml)."""


def passwords(folder: Path) -> dict[str, str]:
    """Each user's password, kept in `folder` (one file per user, mode 0600), made up at
    random the first time: once per data folder, so restarts keep them."""
    return {user: credentials.password(folder / user) for user in USERS}


def write_config(path: Path, passwords: Mapping[str, str]) -> None:
    """The server's config file with the passwords in it: readable by its owner only."""
    quoted = {user: json.dumps(password) for user, password in passwords.items()}
    credentials.write_private(path, authorization(quoted))

