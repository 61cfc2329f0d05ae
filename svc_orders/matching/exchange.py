"""The matching engine: one `Book` per instrument behind a single `submit(command)`.

Synchronous and deterministic: the same commands (timestamps included) give the same
events. Order ids are unique among resting orders across all books, so cancels and
modifies need no symbol. Rejections are values (`CommandRejected`, `OrderRejected`);
only a broken invariant raises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from common.instruments import Instrument
from common.messages import (
    CancelOrder,
    Command,
    CommandRejected,
    EventBatch,
    ExpireOrders,
    ModifyOrder,
    PlaceOrder,
    RejectReason,
    Side,
)
from svc_orders.matching import state
from svc_orders.matching.book import Book
from svc_orders.matching.order import Order
from svc_orders.matching.replay import apply_batch

QueueView = tuple[int, list[tuple[str, int]]]  # price, (order_id, remaining) in queue order
Depth = list[tuple[int, int, int]]


class Exchange:
    def __init__(self, instruments: Mapping[str, Instrument]) -> None:
        self.instruments = dict(instruments)
        self.orders: dict[str, Order] = {}
        self.books = {symbol: Book(instrument, self.orders)
                      for symbol, instrument in self.instruments.items()}
        self._placers = {symbol: book.place for symbol, book in self.books.items()}
        self._handlers: dict[type[Any], Callable[[Any], EventBatch]] = {
            PlaceOrder: self._place, CancelOrder: self._cancel,
            ModifyOrder: self._modify, ExpireOrders: self._expire,
        }

    def submit(self, command: Command) -> EventBatch:
        """Process one command atomically and return its events."""
        if type(command) is PlaceOrder:  # the most frequent command: the shortest path
            place = self._placers.get(command.symbol)
            if place is not None and command.order_id not in self.orders:
                return place(command)
        return self._handlers[type(command)](command)

    def _place(self, command: PlaceOrder) -> EventBatch:
        book = self.books.get(command.symbol)
        if book is None:
            return _nothing(command.symbol, command.timestamp, command.order_id,
                            RejectReason.UNKNOWN_SYMBOL, f"unknown symbol {command.symbol!r}")
        if command.order_id in self.orders:
            return _nothing(command.symbol, command.timestamp, command.order_id,
                            RejectReason.DUPLICATE_ORDER_ID, "an order with this id is live")
        return book.place(command)

    def _cancel(self, command: CancelOrder) -> EventBatch:
        order = self.orders.get(command.order_id)
        if order is None:
            return _not_live(command.order_id, command.timestamp)
        return self.books[order.placed.symbol].cancel(order, command.timestamp)

    def _modify(self, command: ModifyOrder) -> EventBatch:
        order = self.orders.get(command.order_id)
        if order is None:
            return _not_live(command.order_id, command.timestamp)
        return self.books[order.placed.symbol].modify(order, command)

    def _expire(self, command: ExpireOrders) -> EventBatch:
        book = self.books.get(command.symbol)
        if book is None:
            return _nothing(command.symbol, command.timestamp, "",
                            RejectReason.UNKNOWN_SYMBOL, f"unknown symbol {command.symbol!r}")
        return book.expire(command.timestamp)

    # ---- recovery ------------------------------------------------------------------

    def apply(self, batch: EventBatch) -> None:
        """Replay one journaled batch (seq > 0) of any instrument."""
        apply_batch(self.books[batch.symbol], batch)

    def capture(self) -> bytes:
        """The engine's whole state as bytes (see `state`)."""
        return state.encode([book.capture() for book in self.books.values()])

    @classmethod
    def restore(cls, data: bytes, instruments: Mapping[str, Instrument]) -> Exchange:
        """An exchange in exactly the state `capture()` wrote (instruments may be added)."""
        exchange = cls(instruments)
        for book_state in state.decode(data).books:
            book = exchange.books.get(book_state.symbol)
            if book is None:
                raise ValueError(f"engine state holds unknown instrument {book_state.symbol!r}")
            book.restore(book_state)
        return exchange

    # ---- views ---------------------------------------------------------------------

    def seq(self, symbol: str) -> int:
        return self.books[symbol].seq

    def live_order(self, order_id: str) -> Order | None:
        return self.orders.get(order_id)

    def best(self, symbol: str) -> tuple[int | None, int | None]:
        book = self.books[symbol]
        return book.bids.best(), book.asks.best()

    def depth(self, symbol: str, n: int) -> tuple[Depth, Depth]:
        return self.books[symbol].depth(n)

    def levels(self, symbol: str, side: Side) -> list[QueueView]:
        """Every level of one side, best first, with (order_id, remaining) in queue order."""
        ladder = self.books[symbol].sides[side is Side.BUY]
        return [(price, [(o.order_id, o.remaining) for o in ladder.levels[price]])
                for price in ladder.prices()]

    def check(self) -> None:
        """Assert every book's invariants and that the id index holds only resting orders."""
        for book in self.books.values():
            book.check()
        resting = sum(book.bids.order_count() + book.asks.order_count()
                      for book in self.books.values())
        assert resting == len(self.orders), "order index out of step with the books"


def _nothing(symbol: str, timestamp: int, order_id: str, reason: RejectReason,
             message: str) -> EventBatch:
    return EventBatch(symbol=symbol, seq=0, events=[CommandRejected(
        timestamp=timestamp, order_id=order_id, reason=reason, message=message)])


def _not_live(order_id: str, timestamp: int) -> EventBatch:
    return _nothing("", timestamp, order_id, RejectReason.ORDER_NOT_LIVE,
                    "no live order with this id")
