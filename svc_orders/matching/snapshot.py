"""The engine's state as bytes: every book's counters and resting orders in queue order.

msgpack of array-like Structs: compact, and restoring re-adds orders in the stored
order, which reproduces each level's FIFO exactly.
"""

from __future__ import annotations

import msgspec

from svc_orders.matching.book import Book
from svc_orders.matching.order import Order

SNAPSHOT_VERSION = 1


class BookRecord(msgspec.Struct, frozen=True, array_like=True):
    symbol: str
    seq: int
    trade_no: int
    orders: list[Order]  # bids then asks, each best price first, oldest first


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
    for order in record.orders:
        (book.bids if order.is_buy else book.asks).add(order)
        book.orders[order.order_id] = order


def _record(book: Book) -> BookRecord:
    return BookRecord(book.symbol, book.seq, book.trade_no, list(book.resting()))
