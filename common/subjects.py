"""Every NATS subject, stream and bucket name, in one place: a typo here drops messages."""

from __future__ import annotations

import hashlib
import re

STREAM = "EXCHANGE"
EVENTS_WILDCARD = "ex.events.>"
SNAPSHOT_BUCKET = "EXCHANGE_SNAPSHOTS"
# In the journal's stream but no instrument's: a new svc_orders leader's first message,
# which breaks the chain of predecessors the old leader appends with (README, failover).
TAKEOVER = "ex.takeover"
# KV: the svc_orders leader's lease, one key held by one instance at a time.
LEADER_BUCKET = "EXCHANGE_LEADER"
LEADER_KEY = "svc_orders"
BOOK_REQUEST = "ex.book.request"  # request-reply: svc_orders answers with the book message
# Request-reply, svc_trades answers (msgpack, `common.queries`); its instances share the
# queue group, so each request is answered once.
ORDER_QUERY = "ex.query.order"  # `GetOrder` -> `FoundOrder` | `QueryFailed`
ORDERS_QUERY = "ex.query.orders"  # `ListOrders` -> `OrderPage` | `QueryFailed`
# Asked by svc_stream for a `candles` snapshot: `RecentCandles` -> `CandlesFound` | `QueryFailed`.
CANDLES_QUERY = "ex.query.candles"
QUERY_QUEUE = "svc_trades"
# Request-reply, svc_orders answers (msgpack, `common.transfers`): a deposit or withdrawal
# svc_trades took on its account routes; `TransferRequest` -> `TransferAnswer`.
TRANSFER_REQUEST = "ex.accounts.transfer"
TRANSFER_QUEUE = "svc_orders"


def events(symbol: str) -> str:
    """JetStream subject of one instrument's journal (msgpack `EventBatch`)."""
    return f"ex.events.{symbol}"


def trades(symbol: str) -> str:
    """Core subject of one instrument's trades (JSON, the /ws/trades/ update message)."""
    return f"md.trades.{symbol}"


TRADES_WILDCARD = "md.trades.*"


def book(symbol: str) -> str:
    """Core subject of one instrument's aggregated book (JSON, the /ws/orderbook/ message)."""
    return f"md.book.{symbol}"


# A user id that is a canonical UUID (every user id the services issue or accept is) is a
# safe subject token as it stands; anything else is hashed, so that no user id can form a
# wildcard, a second token or a broken subject.
_SAFE_USER = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
USER_ORDERS_WILDCARD = "md.orders.*"
# Core, msgpack `OrdersInterest`: each svc_stream instance names the users it has `orders`
# subscribers for, at once when one is added and every half second; svc_orders
# builds `user_orders` messages for those users only.
ORDERS_INTEREST = "md.interest.orders"


def user_orders(user_id: str) -> str:
    """Core subject of one user's order updates and fills (JSON `OrdersMessage`), published
    with auth on only: `md.orders.<user_id>`, or `md.orders.h<sha256 of it>` for a user
    id that is not a canonical UUID."""
    if _SAFE_USER.match(user_id):
        return f"md.orders.{user_id}"
    return f"md.orders.h{hashlib.sha256(user_id.encode()).hexdigest()}"


def settlements(symbol: str) -> str:
    """Core subject of settled trades (msgpack `TradeSettled`)."""
    return f"ex.settlements.{symbol}"


def batch_id(symbol: str, seq: int) -> str:
    """`Nats-Msg-Id` of a journaled batch: JetStream drops a repeat within its window."""
    return f"{symbol}:{seq}"


def symbol_of(subject: str) -> str:
    """The instrument of any per-symbol subject above."""
    return subject.rsplit(".", 1)[1]


KEYS_BUCKET = "EXCHANGE_KEYS"  # KV: API key records by key id, watched by every service
KEYS_STREAM = f"KV_{KEYS_BUCKET}"  # the stream JetStream keeps the keys bucket in
