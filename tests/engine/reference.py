"""Reference model of the matching engine: slow, plain, and written straight from the rules.

It shares nothing with `svc_orders.matching` except the message schemas, so the property
tests can hold the engine to it event for event. Every book is one unsorted list of
resting orders; "the book" of a side is that list filtered and sorted by price priority,
then by arrival (a counter that a requeued order takes afresh). Everything is a linear
scan. Read it top to bottom next to the order semantics it implements:

Place, in this order:
  1. unknown symbol -> CommandRejected(UNKNOWN_SYMBOL), seq 0, batch symbol = command's
  2. order id live in any instrument -> CommandRejected(DUPLICATE_ORDER_ID), seq 0
  3. the order is recorded (next seq); refused as a whole with one OrderRejected for
     INVALID_ORDER, INVALID_QUANTITY, INVALID_PRICE, POST_ONLY_WOULD_CROSS,
     FOK_NOT_FILLABLE (checked in that order)
  4. OrderAccepted, then matching (with self-trade prevention), then the remainder is
     cancelled (market: NO_LIQUIDITY, IOC: IMMEDIATE_OR_CANCEL) or rests (GTC/DAY).
Cancel: OrderCancelled(USER) for a live order, else CommandRejected(ORDER_NOT_LIVE).
Modify: validated (ORDER_NOT_LIVE, INVALID_ORDER, INVALID_PRICE, INVALID_QUANTITY,
  POST_ONLY_WOULD_CROSS), then OrderModified; a new price re-enters as a taker, a higher
  quantity goes to the back of the level, a lower or equal one keeps its place.
Expire: OrderExpired for every live DAY order of the instrument, bids then asks.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from common.instruments import Instrument
from common.messages import (
    CancelOrder,
    CancelReason,
    Command,
    CommandRejected,
    Event,
    EventBatch,
    ExpireOrders,
    ModifyOrder,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderModified,
    OrderRejected,
    OrderType,
    PlaceOrder,
    RejectReason,
    Side,
    Stp,
    TimeInForce,
    TradeExecuted,
    TransferFunds,
)

Level = tuple[int, list[tuple[str, int]]]
"""(price, [(order_id, remaining), ...] in queue order)"""

DepthLevel = tuple[int, int, int]
"""(price, total remaining, order count)"""


class ExchangeApi(Protocol):
    """What the tests use of an exchange: the engine and this model both provide it."""

    def submit(self, command: Command) -> EventBatch: ...
    def levels(self, symbol: str, side: Side) -> list[Level]: ...
    def seq(self, symbol: str) -> int: ...
    def best(self, symbol: str) -> tuple[int | None, int | None]: ...
    def depth(self, symbol: str, n: int) -> tuple[list[DepthLevel], list[DepthLevel]]: ...


def opposite(side: Side) -> Side:
    return Side.SELL if side is Side.BUY else Side.BUY


@dataclass(eq=False)  # identity: `in` and `remove` must find this very order
class RefOrder:
    order_id: str
    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    price: int | None
    quantity: int
    remaining: int
    post_only: bool
    stp: Stp
    user_id: str | None
    client_order_id: str | None
    traded: int = 0
    cancelled: int = 0
    arrival: int = 0  # time priority within a price: smaller is older

    @property
    def limit(self) -> int:
        """The price of a resting (always limit) order."""
        assert self.price is not None, "only limit orders rest"
        return self.price


@dataclass
class RefBook:
    instrument: Instrument
    seq: int = 0
    trade_no: int = 0
    resting: list[RefOrder] = field(default_factory=list)  # both sides, unsorted

    def queue(self, side: Side) -> list[RefOrder]:
        """The resting orders of `side` in matching priority: best price, then oldest."""
        orders = [o for o in self.resting if o.side is side]
        if side is Side.BUY:
            return sorted(orders, key=lambda o: (-o.limit, o.arrival))
        return sorted(orders, key=lambda o: (o.limit, o.arrival))

    def best(self, side: Side) -> int | None:
        queue = self.queue(side)
        return queue[0].limit if queue else None


def would_cross(book: RefBook, side: Side, price: int) -> bool:
    """Whether a limit price on `side` would take liquidity from the opposite best."""
    best = book.best(opposite(side))
    if best is None:
        return False
    return price >= best if side is Side.BUY else price <= best


def reaches(taker: RefOrder, maker: RefOrder) -> bool:
    """Whether the taker's limit (none for market) reaches the maker's price."""
    if taker.type is OrderType.MARKET:
        return True
    if taker.side is Side.BUY:
        return maker.limit <= taker.limit
    return maker.limit >= taker.limit


def self_trade(taker: RefOrder, maker: RefOrder) -> bool:
    """Whether self-trade prevention applies between these two orders."""
    return (taker.user_id is not None and taker.user_id == maker.user_id
            and taker.stp is not Stp.NONE)


def refused(symbol: str, timestamp: int, order_id: str, reason: RejectReason) -> EventBatch:
    """A command that changes nothing: seq 0 and one CommandRejected (message left empty)."""
    return EventBatch(symbol=symbol, seq=0, events=[
        CommandRejected(timestamp=timestamp, order_id=order_id, reason=reason)])


class ReferenceExchange:
    def __init__(self, instruments: Mapping[str, Instrument]) -> None:
        self.books = {symbol: RefBook(instrument) for symbol, instrument in instruments.items()}
        self.arrivals = itertools.count(1)

    # ---- views ---------------------------------------------------------------------

    def live_order(self, order_id: str) -> RefOrder | None:
        for book in self.books.values():
            for order in book.resting:
                if order.order_id == order_id:
                    return order
        return None

    def levels(self, symbol: str, side: Side) -> list[Level]:
        levels: list[Level] = []
        for order in self.books[symbol].queue(side):
            if not levels or levels[-1][0] != order.limit:
                levels.append((order.limit, []))
            levels[-1][1].append((order.order_id, order.remaining))
        return levels

    def depth(self, symbol: str, n: int) -> tuple[list[DepthLevel], list[DepthLevel]]:
        def aggregate(side: Side) -> list[DepthLevel]:
            return [(price, sum(q for _, q in queue), len(queue))
                    for price, queue in self.levels(symbol, side)[:n]]
        return aggregate(Side.BUY), aggregate(Side.SELL)

    def best(self, symbol: str) -> tuple[int | None, int | None]:
        book = self.books[symbol]
        return book.best(Side.BUY), book.best(Side.SELL)

    def seq(self, symbol: str) -> int:
        return self.books[symbol].seq

    # ---- commands ------------------------------------------------------------------

    def submit(self, command: Command) -> EventBatch:
        if isinstance(command, PlaceOrder):
            return self.place(command)
        if isinstance(command, CancelOrder):
            return self.cancel(command)
        if isinstance(command, ModifyOrder):
            return self.modify(command)
        if isinstance(command, TransferFunds):  # no balances without funding
            return refused("", command.timestamp, "", RejectReason.UNKNOWN_ASSET)
        return self.expire(command)

    def place(self, cmd: PlaceOrder) -> EventBatch:
        book = self.books.get(cmd.symbol)
        if book is None:
            return refused(cmd.symbol, cmd.timestamp, cmd.order_id, RejectReason.UNKNOWN_SYMBOL)
        if self.live_order(cmd.order_id) is not None:
            return refused(cmd.symbol, cmd.timestamp, cmd.order_id,
                           RejectReason.DUPLICATE_ORDER_ID)

        book.seq += 1
        seq = book.seq
        order = RefOrder(
            order_id=cmd.order_id, symbol=cmd.symbol, side=cmd.side, type=cmd.type,
            time_in_force=cmd.time_in_force, price=cmd.price, quantity=cmd.quantity,
            remaining=cmd.quantity, post_only=cmd.post_only, stp=cmd.stp,
            user_id=cmd.user_id, client_order_id=cmd.client_order_id,
        )
        reason = self.refusal(book, order)
        if reason is not None:
            return EventBatch(symbol=cmd.symbol, seq=seq,
                              events=[OrderRejected(seq=seq, order=cmd, reason=reason)])

        events: list[Event] = [OrderAccepted(seq=seq, order=cmd)]
        self.take(book, order, seq, cmd.timestamp, events)
        return EventBatch(symbol=cmd.symbol, seq=seq, events=events)

    def refusal(self, book: RefBook, order: RefOrder) -> RejectReason | None:
        """Why a new order is refused as a whole, or None."""
        if order.type is OrderType.LIMIT:
            if order.price is None:
                return RejectReason.INVALID_ORDER
        elif (order.price is not None or order.post_only
              or order.time_in_force in (TimeInForce.GTC, TimeInForce.DAY)):
            return RejectReason.INVALID_ORDER
        if book.instrument.quantity_error(order.quantity) is not None:
            return RejectReason.INVALID_QUANTITY
        if order.price is not None and book.instrument.price_error(order.price) is not None:
            return RejectReason.INVALID_PRICE
        if order.post_only and would_cross(book, order.side, order.limit):
            return RejectReason.POST_ONLY_WOULD_CROSS
        if (order.time_in_force is TimeInForce.FOK
                and self.fillable(book, order) < order.quantity):
            return RejectReason.FOK_NOT_FILLABLE
        return None

    def fillable(self, book: RefBook, taker: RefOrder) -> int:
        """The quantity matching would fill now, with self-trade prevention, changing nothing."""
        total = 0
        for maker in book.queue(opposite(taker.side)):
            if not reaches(taker, maker):
                break
            if self_trade(taker, maker):
                if taker.stp is Stp.CANCEL_OLDEST:
                    continue  # that maker would be cancelled, not traded with
                break  # CANCEL_NEWEST / CANCEL_BOTH: matching would stop here
            total += maker.remaining
        return total

    def take(self, book: RefBook, taker: RefOrder, seq: int, timestamp: int,
             events: list[Event]) -> None:
        """Match `taker` (not in the book) against the book, then cancel or rest the rest."""
        while taker.remaining > 0:
            makers = book.queue(opposite(taker.side))
            if not makers or not reaches(taker, makers[0]):
                break
            maker = makers[0]
            if self_trade(taker, maker):
                if taker.stp is Stp.CANCEL_NEWEST:
                    self.cancel_order(book, taker, CancelReason.SELF_TRADE, seq, timestamp, events)
                    return
                if taker.stp is Stp.CANCEL_OLDEST:
                    self.cancel_order(book, maker, CancelReason.SELF_TRADE, seq, timestamp, events)
                    continue
                # CANCEL_BOTH
                self.cancel_order(book, maker, CancelReason.SELF_TRADE, seq, timestamp, events)
                self.cancel_order(book, taker, CancelReason.SELF_TRADE, seq, timestamp, events)
                return

            quantity = min(taker.remaining, maker.remaining)
            buy, sell = (taker, maker) if taker.side is Side.BUY else (maker, taker)
            book.trade_no += 1
            events.append(TradeExecuted(
                seq=seq, timestamp=timestamp, symbol=book.instrument.symbol,
                trade_no=book.trade_no, price=maker.limit, quantity=quantity,
                buy_order_id=buy.order_id, sell_order_id=sell.order_id,
                aggressor_side=taker.side, buyer_user_id=buy.user_id,
                seller_user_id=sell.user_id,
            ))
            for order in (taker, maker):
                order.remaining -= quantity
                order.traded += quantity
            if maker.remaining == 0:
                book.resting.remove(maker)

        if taker.remaining == 0:
            return
        if taker.type is OrderType.MARKET:
            self.cancel_order(book, taker, CancelReason.NO_LIQUIDITY, seq, timestamp, events)
        elif taker.time_in_force is TimeInForce.IOC:
            self.cancel_order(book, taker, CancelReason.IMMEDIATE_OR_CANCEL, seq, timestamp,
                              events)
        else:
            assert taker.time_in_force is not TimeInForce.FOK, "a fillable FOK fills at once"
            taker.arrival = next(self.arrivals)  # the back of its price level
            book.resting.append(taker)

    def cancel_order(self, book: RefBook, order: RefOrder, reason: CancelReason, seq: int,
                     timestamp: int, events: list[Event]) -> None:
        events.append(OrderCancelled(seq=seq, timestamp=timestamp, order_id=order.order_id,
                                     quantity=order.remaining, reason=reason))
        order.cancelled += order.remaining
        order.remaining = 0
        if order in book.resting:
            book.resting.remove(order)

    def cancel(self, cmd: CancelOrder) -> EventBatch:
        order = self.live_order(cmd.order_id)
        if order is None:
            return refused("", cmd.timestamp, cmd.order_id, RejectReason.ORDER_NOT_LIVE)
        book = self.books[order.symbol]
        book.seq += 1
        events: list[Event] = []
        self.cancel_order(book, order, CancelReason.USER, book.seq, cmd.timestamp, events)
        return EventBatch(symbol=order.symbol, seq=book.seq, events=events)

    def modify(self, cmd: ModifyOrder) -> EventBatch:
        order = self.live_order(cmd.order_id)
        if order is None:
            return refused("", cmd.timestamp, cmd.order_id, RejectReason.ORDER_NOT_LIVE)
        book = self.books[order.symbol]
        reason = self.modify_refusal(order, cmd)
        if reason is not None:
            return refused(order.symbol, cmd.timestamp, cmd.order_id, reason)
        new_price = cmd.price if cmd.price is not None else order.limit
        book.seq += 1
        seq = book.seq
        new_quantity = cmd.quantity if cmd.quantity is not None else order.quantity
        requeued = cmd.price is not None or new_quantity > order.quantity
        events: list[Event] = [OrderModified(
            seq=seq, timestamp=cmd.timestamp, order_id=order.order_id, price=new_price,
            quantity=new_quantity, requeued=requeued,
        )]
        order.quantity = new_quantity
        order.remaining = new_quantity - order.traded
        if cmd.price is not None:
            book.resting.remove(order)
            order.price = cmd.price
            self.take(book, order, seq, cmd.timestamp, events)
        elif requeued:
            order.arrival = next(self.arrivals)
        return EventBatch(symbol=order.symbol, seq=seq, events=events)

    def modify_refusal(self, order: RefOrder, cmd: ModifyOrder) -> RejectReason | None:
        """Why a modify of the live `order` changes nothing, or None."""
        book = self.books[order.symbol]
        instrument = book.instrument
        if cmd.price is None and cmd.quantity is None:
            return RejectReason.INVALID_ORDER
        if cmd.price is not None and instrument.price_error(cmd.price) is not None:
            return RejectReason.INVALID_PRICE
        if cmd.quantity is not None and (instrument.quantity_error(cmd.quantity) is not None
                                         or cmd.quantity <= order.traded):
            return RejectReason.INVALID_QUANTITY
        new_price = cmd.price if cmd.price is not None else order.limit
        if order.post_only and would_cross(book, order.side, new_price):
            return RejectReason.POST_ONLY_WOULD_CROSS
        return None

    def expire(self, cmd: ExpireOrders) -> EventBatch:
        book = self.books.get(cmd.symbol)
        if book is None:
            return refused(cmd.symbol, cmd.timestamp, "", RejectReason.UNKNOWN_SYMBOL)
        day = [o for o in book.queue(Side.BUY) + book.queue(Side.SELL)
               if o.time_in_force is TimeInForce.DAY]
        if not day:
            return EventBatch(symbol=cmd.symbol, seq=0, events=[])
        book.seq += 1
        events: list[Event] = []
        for order in day:
            events.append(OrderExpired(seq=book.seq, timestamp=cmd.timestamp,
                                       order_id=order.order_id, quantity=order.remaining))
            order.cancelled += order.remaining
            order.remaining = 0
            book.resting.remove(order)
        return EventBatch(symbol=cmd.symbol, seq=book.seq, events=events)
