"""The matching engine: one `Book` per instrument behind a single `submit(command)`.

Synchronous and deterministic: the same commands (timestamps included) give the same
events. Order ids are unique among resting orders across all books, so cancels and
modifies need no symbol. Rejections are values (`CommandRejected`, `OrderRejected`);
only a broken invariant raises.

With `funding` on, balances (`funds`) stand beside the books: `submit` is then
`_funded`, which asks for each order's hold before matching and adds the balance events
of the command to its batch; with it off, nothing of that runs.
"""

from __future__ import annotations

from collections.abc import Mapping

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
    TransferFunds,
)
from svc_orders.matching import state
from svc_orders.matching.book import Book
from svc_orders.matching.funds import Funds
from svc_orders.matching.order import Order
from svc_orders.matching.replay import apply_batch

QueueView = tuple[int, list[tuple[str, int]]]  # price, (order_id, remaining) in queue order
Depth = list[tuple[int, int, int]]


class Exchange:
    def __init__(self, instruments: Mapping[str, Instrument], funding: bool = False) -> None:
        self.instruments = dict(instruments)
        self.orders: dict[str, Order] = {}
        self.books = {symbol: Book(instrument, self.orders)
                      for symbol, instrument in self.instruments.items()}
        self._placers = {symbol: book.place for symbol, book in self.books.items()}
        self.funds = Funds(self.instruments) if funding else None
        if funding:
            self.submit = self._funded  # type: ignore[method-assign]

    def submit(self, command: Command) -> EventBatch:
        """Process one command atomically and return its events."""
        if type(command) is PlaceOrder:  # the most frequent command: the shortest path
            place = self._placers.get(command.symbol)
            if place is not None and command.order_id not in self.orders:
                return place(command)
            return self._place(command)
        if type(command) is CancelOrder:
            order = self.orders.get(command.order_id)
            if order is None:
                return _not_live(command.order_id, command.timestamp)
            return self.books[order.placed.symbol].cancel(order, command.timestamp)
        if type(command) is ModifyOrder:
            order = self.orders.get(command.order_id)
            if order is None:
                return _not_live(command.order_id, command.timestamp)
            return self.books[order.placed.symbol].modify(order, command)
        if type(command) is ExpireOrders:
            return self._expire(command)
        if type(command) is TransferFunds:
            return _nothing("", command.timestamp, "", RejectReason.UNKNOWN_ASSET,
                            "funding is off: there are no balances")
        raise TypeError(f"not a command: {command!r}")

    def _funded(self, command: Command) -> EventBatch:
        """`submit` with balances: the hold is asked for once the order passed every
        other check, and the batch comes back with the command's balance events."""
        funds = self.funds
        assert funds is not None
        if type(command) is PlaceOrder:
            book = self.books.get(command.symbol)
            if (book is None or command.order_id in self.orders
                    or book.refusal(command) is not None):
                return Exchange.submit(self, command)  # refused as without funding
            hold = funds.placement(book, command)
            instrument = book.instrument
            asset = instrument.quote if command.side is Side.BUY else instrument.base_asset
            if hold > funds.available(command.user_id, asset):
                return book.reject(command, RejectReason.INSUFFICIENT_FUNDS)
            return funds.settle(book.place(command), self.orders, (command.order_id, hold))
        if type(command) is ModifyOrder:
            order = self.orders.get(command.order_id)
            if order is None:
                return _not_live(command.order_id, command.timestamp)
            book = self.books[order.placed.symbol]
            if book.modify_error(order, command.price, command.quantity) is not None:
                return book.modify(order, command)  # refused as without funding
            extra = funds.modify_shortfall(book, order, command)
            if extra > funds.available(order.user_id, funds.holds[order.order_id].asset):
                return EventBatch(symbol=book.symbol, seq=0, events=[CommandRejected(
                    timestamp=command.timestamp, order_id=order.order_id,
                    reason=RejectReason.INSUFFICIENT_FUNDS,
                    message="the modified order needs more than is available")])
            return funds.settle(book.modify(order, command), self.orders,
                                (order.order_id, extra))
        if type(command) is TransferFunds:
            return funds.transfer(command, self.books)
        return funds.settle(Exchange.submit(self, command), self.orders)

    def _place(self, command: PlaceOrder) -> EventBatch:
        """A new order `submit` could not hand to its book at once: say why, or do so."""
        book = self.books.get(command.symbol)
        if book is None:
            return _nothing(command.symbol, command.timestamp, command.order_id,
                            RejectReason.UNKNOWN_SYMBOL, f"unknown symbol {command.symbol!r}")
        if command.order_id in self.orders:
            return _nothing(command.symbol, command.timestamp, command.order_id,
                            RejectReason.DUPLICATE_ORDER_ID, "an order with this id is live")
        return book.place(command)

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
        if self.funds is not None:
            self.funds.apply_all(batch.events)

    def capture(self) -> bytes:
        """The engine's whole state as bytes (see `state`)."""
        return state.encode([book.capture() for book in self.books.values()],
                            None if self.funds is None else self.funds.capture())

    @classmethod
    def restore(cls, data: bytes, instruments: Mapping[str, Instrument],
                funding: bool = False) -> Exchange:
        """An exchange in exactly the state `capture()` wrote (instruments may be added)."""
        exchange = cls(instruments, funding)
        captured = state.decode(data)
        for book_state in captured.books:
            book = exchange.books.get(book_state.symbol)
            if book is None:
                raise ValueError(f"engine state holds unknown instrument {book_state.symbol!r}")
            book.restore(book_state)
        if exchange.funds is not None and captured.funds is not None:
            exchange.funds.restore(captured.funds)
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
        return [(price, [(o.order_id, o.remaining) for o in ladder.levels[price].values()])
                for price in ladder.prices()]

    def check(self) -> None:
        """Assert every book's invariants and that the id index holds only resting orders."""
        for book in self.books.values():
            book.check()
        resting = sum(book.bids.order_count() + book.asks.order_count()
                      for book in self.books.values())
        assert resting == len(self.orders), "order index out of step with the books"
        if self.funds is not None:
            self.funds.check(self.orders)


def _nothing(symbol: str, timestamp: int, order_id: str, reason: RejectReason,
             message: str) -> EventBatch:
    return EventBatch(symbol=symbol, seq=0, events=[CommandRejected(
        timestamp=timestamp, order_id=order_id, reason=reason, message=message)])


def _not_live(order_id: str, timestamp: int) -> EventBatch:
    return _nothing("", timestamp, order_id, RejectReason.ORDER_NOT_LIVE,
                    "no live order with this id")
