"""Every NATS subject, stream and bucket name, in one place: a typo here drops messages."""

from __future__ import annotations

STREAM = "EXCHANGE"
EVENTS_WILDCARD = "ex.events.>"
SNAPSHOT_BUCKET = "EXCHANGE_SNAPSHOTS"
BOOK_REQUEST = "ex.book.request"  # request-reply: svc_orders answers with the book message
# Request-reply, svc_trades answers (msgpack, `common.queries`); its instances share the
# queue group, so each request is answered once.
ORDER_QUERY = "ex.query.order"  # `GetOrder` -> `FoundOrder` | `QueryFailed`
ORDERS_QUERY = "ex.query.orders"  # `ListOrders` -> `OrderPage` | `QueryFailed`
QUERY_QUEUE = "svc_trades"


def events(symbol: str) -> str:
    """JetStream subject of one instrument's journal (msgpack `EventBatch`)."""
    return f"ex.events.{symbol}"


def trades(symbol: str) -> str:
    """Core subject of one instrument's trades (JSON, the /ws/trades/ update message)."""
    return f"md.trades.{symbol}"


def book(symbol: str) -> str:
    """Core subject of one instrument's aggregated book (JSON, the /ws/orderbook/ message)."""
    return f"md.book.{symbol}"


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
