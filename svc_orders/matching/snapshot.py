"""The engine's state as bytes: every book's counters and resting orders in queue order.

msgpack of array-like Structs: compact, and restoring re-adds orders in the stored
order, which reproduces each level's FIFO exactly.
"""

from __future__ import annotations

import msgspec

from common.messages import OrderType, Side, Stp, TimeInForce
from svc_orders.matching.book import Book
from svc_orders.matching.order import Order

SNAPSHOT_VERSION = 1


class OrderRecord(msgspec.Struct, frozen=True, array_like=True, gc=False):
    order_id: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    price: int | None
    quantity: int
    remaining: int
    traded: int
    cancelled: int
    user_id: str | None
    client_order_id: str | None
    stp: Stp
    post_only: bool
    timestamp: int


class BookRecord(msgspec.Struct, frozen=True, array_like=True):
    symbol: str
    seq: int
    trade_no: int
    orders: list[OrderRecord]  # bids then asks, each best price first, oldest first


class Snapshot(msgspec.Struct, frozen=True):
    version: int
    books: list[BookRecord]


_decoder = msgspec.msgpack.Decoder(Snapshot)


def dump(books: list[Book]) -> bytes:
    return msgspec.msgpack.encode(Snapshot(SNAPSHOT_VERSION, [_record(book) for book in books]))


def load(data: bytes) -> Snapshot:
    snapshot = _decoder.decode(data)
    if snapshot.version != SNAPSHOT_VERSION:
        raise ValueError(f"snapshot version {snapshot.version} is not {SNAPSHOT_VERSION}")
    return snapshot


def restore_book(book: Book, record: BookRecord) -> None:
    """Fill an empty `book` with the state of `record`."""
    book.seq, book.trade_no = record.seq, record.trade_no
    for r in record.orders:
        order = Order(
            order_id=r.order_id, symbol=book.symbol, side=r.side, type=r.type,
            time_in_force=r.time_in_force, price=r.price, quantity=r.quantity,
            remaining=r.remaining, traded=r.traded, cancelled=r.cancelled,
            user_id=r.user_id, client_order_id=r.client_order_id, stp=r.stp,
            post_only=r.post_only, timestamp=r.timestamp)
        (book.bids if order.is_buy else book.asks).add(order)
        book.orders[order.order_id] = order


def _record(book: Book) -> BookRecord:
    return BookRecord(book.symbol, book.seq, book.trade_no, [
        OrderRecord(o.order_id, o.side, o.type, o.time_in_force, o.price, o.quantity,
                    o.remaining, o.traded, o.cancelled, o.user_id, o.client_order_id, o.stp,
                    o.post_only, o.timestamp)
        for o in book.resting()])
