"""The order book of one instrument: price-time priority matching, synchronous, no I/O.

Invariants (checked by `check`, asserted by the property tests after every command):
- each resting order has `remaining > 0`, a limit price on the instrument's grid, and a
  resting time in force (GTC or DAY); `remaining + traded + cancelled == quantity`;
- every level holds at least one order, its total is the sum of their `remaining`, and
  the ladder's heap has a key for it;
- the book is never crossed: best bid < best ask after every command;
- `orders` (shared with the other books) indexes exactly the resting orders.

A trade executes at the maker's price. A command that changes state takes the next
sequence number, stamped on every event of its batch; a command that changes nothing
answers a batch with seq 0 and one `CommandRejected`.
Modify = cancel + re-enter (loses priority) for a new price or a larger quantity; a
smaller quantity is amended in place and keeps priority.

Events are built with positional arguments, a third cheaper than keywords on the hot
paths; `tests/engine/test_book.py` pins the field order they rely on.
"""

from __future__ import annotations

from collections.abc import Iterator
from heapq import heappop

from common.instruments import Instrument
from common.messages import (
    CancelReason,
    CommandRejected,
    Event,
    EventBatch,
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
)
from svc_orders.matching.ladder import Ladder
from svc_orders.matching.order import Order
from svc_orders.matching.state import BookState

_NO_LIMIT = 1 << 62  # a limit key beyond any price: market orders
_IMMEDIATE_TIFS = (TimeInForce.IOC, TimeInForce.FOK)
# Enum hashing runs in Python: membership tests by identity in a tuple are cheaper
_RESTING_TIFS = (TimeInForce.GTC, TimeInForce.DAY)
# Module constants: a global lookup is cheaper than an enum attribute on the hot path
_BUY, _LIMIT, _MARKET, _FOK, _NO_STP, _CANCEL_NEWEST, _CANCEL_OLDEST = (
    Side.BUY, OrderType.LIMIT, OrderType.MARKET, TimeInForce.FOK, Stp.NONE, Stp.CANCEL_NEWEST,
    Stp.CANCEL_OLDEST)
_USER, _SELF_TRADE, _NO_LIQUIDITY, _IOC = (
    CancelReason.USER, CancelReason.SELF_TRADE, CancelReason.NO_LIQUIDITY,
    CancelReason.IMMEDIATE_OR_CANCEL)


class Book:
    __slots__ = ("asks", "bids", "instrument", "orders", "prices", "quantities", "seq", "sides",
                 "symbol", "trade_no")

    def __init__(self, instrument: Instrument, orders: dict[str, Order]) -> None:
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.prices = instrument.prices
        self.quantities = instrument.quantities
        self.orders = orders
        self.bids = Ladder(bids=True)
        self.asks = Ladder(bids=False)
        self.sides = (self.asks, self.bids)  # indexed by `is_buy`: where an order rests
        self.seq = 0
        self.trade_no = 0

    # ---- commands ------------------------------------------------------------------

    def place(self, command: PlaceOrder) -> EventBatch:
        """Record a new order: refuse it whole, or accept, match and rest/cancel the rest."""
        price = command.price
        if (price is not None and command.type is _LIMIT and not command.post_only
                and command.time_in_force is not _FOK and price in self.prices
                and command.quantity in self.quantities):
            reason = None  # the fast path: a plain limit order on the grid passes `refusal`
        else:
            reason = self.refusal(command)
        if reason is not None:
            return self.reject(command, reason)
        self.seq = seq = self.seq + 1
        events: list[Event] = [OrderAccepted(seq, command)]
        # `Order.new` inlined: calling it cost 5.3-5.9% of engine throughput
        # (ops.bench.engine --against, 1M workload, 7 reps, two runs)
        quantity = command.quantity
        taker = Order(command, command.order_id, command.side is _BUY, price, quantity, quantity)
        self._enter(taker, events, seq, command.timestamp)
        return EventBatch(symbol=self.symbol, seq=seq, events=events)

    def cancel(self, order: Order, timestamp: int) -> EventBatch:
        """Cancel a resting order's whole remainder."""
        self.seq = seq = self.seq + 1
        self.unrest(order)
        return EventBatch(symbol=self.symbol, seq=seq, events=[OrderCancelled(
            seq, timestamp, order.order_id, order.cancel(), _USER)])

    def modify(self, order: Order, command: ModifyOrder) -> EventBatch:
        """Amend a resting order's price and/or total quantity (see the module docstring)."""
        price, quantity, ts = command.price, command.quantity, command.timestamp
        if (quantity is None and price is not None and price in self.prices
                and not order.placed.post_only):
            error = None  # the fast path: a new price on the grid passes `modify_error`
        else:
            error = self.modify_error(order, price, quantity)
        if error is not None:
            reason, message = error
            return EventBatch(symbol=self.symbol, seq=0, events=[CommandRejected(
                timestamp=ts, order_id=order.order_id, reason=reason, message=message)])
        self.seq = seq = self.seq + 1
        new_quantity = order.quantity if quantity is None else quantity
        requeued = price is not None or new_quantity > order.quantity
        new_price = order.price if price is None else price
        assert new_price is not None
        events: list[Event] = [OrderModified(
            seq, ts, order.order_id, new_price, new_quantity, requeued)]
        if not requeued:
            self.resize(order, new_quantity)
        elif price is None:
            self.unrest(order)
            self.rest(order.requeued(new_price, new_quantity))
        else:
            self.unrest(order)
            self._enter(order.requeued(new_price, new_quantity), events, seq, ts)
        return EventBatch(symbol=self.symbol, seq=seq, events=events)

    def reject(self, command: PlaceOrder, reason: RejectReason) -> EventBatch:
        """Refuse a new order as a whole: a state change all the same (the order is
        recorded as rejected), so it takes the next sequence number."""
        seq = self.next_seq()
        return EventBatch(symbol=self.symbol, seq=seq, events=[
            OrderRejected(seq=seq, order=command, reason=reason)])

    def next_seq(self) -> int:
        """Take the next sequence number for a command journaled in this book's sequence
        that changes none of its orders (a transfer of an asset the book is home to)."""
        self.seq += 1
        return self.seq

    def expire(self, timestamp: int) -> EventBatch:
        """Session close: every resting DAY order expires (bids then asks, priority order)."""
        expiring = [order for order in self.resting()
                    if order.placed.time_in_force is TimeInForce.DAY]
        if not expiring:
            return EventBatch(symbol=self.symbol, seq=0, events=[])
        self.seq = seq = self.seq + 1
        events: list[Event] = []
        for order in expiring:
            self.unrest(order)
            events.append(OrderExpired(seq=seq, timestamp=timestamp, order_id=order.order_id,
                                       quantity=order.cancel()))
        return EventBatch(symbol=self.symbol, seq=seq, events=events)

    # ---- resting orders: what commands, replay and restore change --------------------

    def rest(self, order: Order) -> None:
        """Queue a live limit order at the back of its level and index it."""
        price = order.price
        assert price is not None, order
        ladder = self.sides[order.is_buy]
        level = ladder.levels.get(price)
        if level is None:
            ladder.open(order)
        else:
            level.append(order)
        self.orders[order.order_id] = order

    def unrest(self, order: Order) -> None:
        """Take a resting order out of its level and the index (its counters untouched)."""
        price = order.price
        assert price is not None, order
        levels = self.sides[order.is_buy].levels
        if levels[price].remove(order):
            del levels[price]
        del self.orders[order.order_id]

    def fill(self, order: Order, quantity: int) -> None:
        """Trade `quantity` of a resting order; a filled order leaves the book."""
        price = order.price
        assert price is not None, order
        levels = self.sides[order.is_buy].levels
        if levels[price].fill(order, quantity):
            del levels[price]
        if not order.remaining:
            del self.orders[order.order_id]

    def resize(self, order: Order, quantity: int) -> None:
        """Give a resting order a new total quantity in place (it keeps its priority)."""
        assert order.price is not None, order
        self.sides[order.is_buy].levels[order.price].resize(order, quantity)

    def resume(self, seq: int, trade_no: int) -> None:
        """Continue numbering after the last command `seq` and the last trade `trade_no`."""
        self.seq, self.trade_no = seq, trade_no

    def capture(self) -> BookState:
        """The counters and every resting order, in the order `restore` needs."""
        return BookState(self.symbol, self.seq, self.trade_no, list(self.resting()))

    def restore(self, state: BookState) -> None:
        """Fill this empty book with `state`: levels re-fill in their exact FIFO order."""
        if self.bids or self.asks:
            raise ValueError(f"{self.symbol}: restore into a book that holds orders")
        self.resume(state.seq, state.trade_no)
        for order in state.orders:
            self.rest(order)

    # ---- matching ------------------------------------------------------------------

    def _enter(self, taker: Order, events: list[Event], seq: int, ts: int) -> None:
        """Match `taker` if it crosses, then rest or cancel what is left of it."""
        makers = self.sides[not taker.is_buy]
        heap = makers.heap
        if heap:  # the top key may be stale: `_match` drops it and finds nothing
            limit_key = _NO_LIMIT if taker.price is None else taker.price * makers.sign
            if heap[0] <= limit_key and (
                    not self._match(taker, makers, limit_key, events, seq, ts)
                    or not taker.remaining):
                return
        placed = taker.placed
        if placed.type is _LIMIT and placed.time_in_force in _RESTING_TIFS:
            self.rest(taker)
        else:
            reason = _NO_LIQUIDITY if placed.type is _MARKET else _IOC
            events.append(self._cancel_rest(taker, reason, seq, ts))

    def _match(self, taker: Order, makers: Ladder, limit_key: int, events: list[Event],
               seq: int, ts: int) -> bool:
        """Trade `taker` against `makers` up to `limit_key`; False if STP cancelled it.

        Hot path: locals only, one dict lookup per level, one event per fill. Each level
        is walked from the front once: the makers filled or cancelled by self-trade
        prevention are a prefix of its queue. A level the walk takes whole is dropped with
        the heap's top key; the last level, taken in part, is settled with `Level.consume`.
        """
        levels, heap, sign = makers.levels, makers.heap, makers.sign
        placed = taker.placed
        stp, taker_user = placed.stp, placed.user_id
        stp_user = taker_user if stp is not _NO_STP else None
        orders, symbol, taker_id = self.orders, self.symbol, taker.order_id
        taker_buys, aggressor = taker.is_buy, placed.side
        append = events.append
        remaining = taker.remaining
        trade_no = self.trade_no
        stopped = False  # self-trade prevention cancelled the taker
        while heap:
            key = heap[0]
            if key > limit_key:
                break
            price = key * sign
            level = levels.get(price)
            if level is None:  # a stale key: the level was emptied
                heappop(heap)
                continue
            gone = taken = 0  # makers that left the front, quantity taken from the level
            queue = level.values()
            for maker in queue:
                maker_user = maker.placed.user_id
                if stp_user is not None and maker_user == stp_user:
                    if stp is not _CANCEL_NEWEST:
                        gone += 1
                        taken += maker.remaining
                        del orders[maker.order_id]
                        append(self._cancel_rest(maker, _SELF_TRADE, seq, ts))
                        if stp is _CANCEL_OLDEST:
                            continue
                    stopped = True
                    break
                maker_id = maker.order_id
                quantity = maker.remaining
                trade_no += 1
                # `Order.fill` inlined here and for the taker below: calling it per maker
                # cost 2% of engine throughput (ops.bench.engine --against, 1M workload)
                if quantity > remaining:
                    quantity = remaining
                    maker.remaining -= quantity
                else:
                    gone += 1
                    del orders[maker_id]
                    maker.remaining = 0
                maker.traded += quantity
                taken += quantity
                remaining -= quantity
                if taker_buys:
                    append(TradeExecuted(seq, ts, symbol, trade_no, price, quantity, taker_id,
                                         maker_id, aggressor, taker_user, maker_user))
                else:
                    append(TradeExecuted(seq, ts, symbol, trade_no, price, quantity, maker_id,
                                         taker_id, aggressor, maker_user, taker_user))
                if not remaining:
                    break
            if gone == len(queue) or level.consume(gone, taken):
                del levels[price]
                heappop(heap)
            if stopped or not remaining:
                break
        self.trade_no = trade_no
        taker.traded += taker.remaining - remaining
        taker.remaining = remaining
        if stopped:
            append(self._cancel_rest(taker, _SELF_TRADE, seq, ts))
        return not stopped

    # ---- checks: the one pre-trade check path (`place` and `modify` skip it only behind
    # their fast-path predicates, which tests/engine/test_book.py compares with these) ----

    def refusal(self, command: PlaceOrder) -> RejectReason | None:
        """Why a new order is refused as a whole, in the contract's order of checks."""
        price = command.price
        if command.type is OrderType.MARKET:
            tif = command.time_in_force
            if price is not None or command.post_only or tif not in _IMMEDIATE_TIFS:
                return RejectReason.INVALID_ORDER
        elif price is None:
            return RejectReason.INVALID_ORDER
        if command.quantity not in self.quantities:
            return RejectReason.INVALID_QUANTITY
        if price is not None:
            if price not in self.prices:
                return RejectReason.INVALID_PRICE
            if command.post_only and self._crosses(command.side is Side.BUY, price):
                return RejectReason.POST_ONLY_WOULD_CROSS
        if (command.time_in_force is TimeInForce.FOK
                and self._fillable(command) < command.quantity):
            return RejectReason.FOK_NOT_FILLABLE
        return None

    def modify_error(
        self, order: Order, price: int | None, quantity: int | None,
    ) -> tuple[RejectReason, str] | None:
        """Why a modify of the resting `order` is refused (reason, message), if it is."""
        if price is None and quantity is None:
            return RejectReason.INVALID_ORDER, "give a new price and/or quantity"
        if price is not None and price not in self.prices:
            problem = self.instrument.price_error(price)
            assert problem is not None
            return RejectReason.INVALID_PRICE, problem
        if quantity is not None:
            problem = self.instrument.quantity_error(quantity)
            if problem is None and quantity <= order.traded:
                problem = f"quantity must exceed the traded quantity {order.traded}"
            if problem is not None:
                return RejectReason.INVALID_QUANTITY, problem
        if order.placed.post_only and price is not None and self._crosses(order.is_buy, price):
            return RejectReason.POST_ONLY_WOULD_CROSS, "post-only order would take liquidity"
        return None

    def _crosses(self, buy: bool, price: int) -> bool:
        """Whether a `buy`/sell order at `price` would take liquidity now."""
        best = self.sides[not buy].best()
        return best is not None and (price >= best if buy else price <= best)

    def _fillable(self, command: PlaceOrder) -> int:
        """How much a FOK order would fill now, honouring its self-trade prevention."""
        makers = self.sides[command.side is not Side.BUY]
        limit_key = _NO_LIMIT if command.price is None else command.price * makers.sign
        stp_user = command.user_id if command.stp is not Stp.NONE else None
        total = 0
        for price in makers.prices():
            if price * makers.sign > limit_key:
                break
            for maker in makers.levels[price].values():
                if stp_user is not None and maker.placed.user_id == stp_user:
                    if command.stp is not Stp.CANCEL_OLDEST:
                        return total
                    continue
                total += maker.remaining
                if total >= command.quantity:
                    return total
        return total

    # ---- helpers and views -----------------------------------------------------------

    @staticmethod
    def _cancel_rest(order: Order, reason: CancelReason, seq: int, ts: int) -> OrderCancelled:
        """Cancel an order's remainder in its counters and describe it."""
        return OrderCancelled(seq, ts, order.order_id, order.cancel(), reason)

    def resting(self) -> Iterator[Order]:
        """Every resting order: bids then asks, each in priority order."""
        yield from self.bids.orders()
        yield from self.asks.orders()

    def depth(self, n: int) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """Top `n` aggregated levels per side: (price, total remaining, orders), best first."""
        return self._aggregate(self.bids, n), self._aggregate(self.asks, n)

    @staticmethod
    def _aggregate(ladder: Ladder, n: int) -> list[tuple[int, int, int]]:
        levels = ladder.levels
        return [(price, levels[price].total, len(levels[price])) for price in ladder.top(n)]

    def check(self) -> None:
        """Raise AssertionError if an invariant of the module docstring is broken."""
        for buy in (True, False):
            ladder = self.sides[buy]
            keyed = {key * ladder.sign for key in ladder.heap}
            for price, level in ladder.levels.items():
                assert level, f"empty level {price}"
                assert price in keyed, f"level {price} missing from the heap"
                total = sum(order.remaining for order in level.values())
                assert level.total == total, f"level {price} total"
                for order_id, order in level.items():
                    assert order_id == order.order_id, order
                    assert order.is_buy is buy, order
                    assert order.price == price, order
                    assert order.remaining > 0, order
                    assert order.rests, order
                    assert order.balanced, order
                    assert self.orders.get(order_id) is order, order
        bid, ask = self.bids.best(), self.asks.best()
        assert bid is None or ask is None or bid < ask, f"crossed book {bid} >= {ask}"
