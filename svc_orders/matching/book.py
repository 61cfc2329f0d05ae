"""The order book of one instrument: price-time priority matching, synchronous, no I/O.

Invariants (checked by `check`, asserted by the property tests after every command):
- each resting order has `remaining > 0`, a limit price on the instrument's grid, and a
  resting time in force (GTC or DAY); `remaining + traded + cancelled == quantity`;
- the book is never crossed: best bid < best ask after every command;
- `orders` (shared with the other books) indexes exactly the resting orders.

A trade executes at the maker's price. A command that changes state takes the next
sequence number, stamped on every event of its batch; a command that changes nothing
answers a batch with seq 0 and one `CommandRejected`.
Modify = cancel + re-enter (loses priority) for a new price or a larger quantity; a
smaller quantity is amended in place and keeps priority.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator

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

_NO_LIMIT = 1 << 62  # a limit key beyond any price: market orders
_IMMEDIATE_TIFS = (TimeInForce.IOC, TimeInForce.FOK)
# Enum hashing runs in Python: membership tests by identity in a tuple are cheaper
_RESTING_TIFS = (TimeInForce.GTC, TimeInForce.DAY)
# Module constants: a global lookup is cheaper than an enum attribute on the hot path
_BUY, _LIMIT, _MARKET, _FOK, _NO_STP = (
    Side.BUY, OrderType.LIMIT, OrderType.MARKET, TimeInForce.FOK, Stp.NONE)


class Book:
    __slots__ = ("asks", "bids", "instrument", "orders", "prices", "quantities", "seq", "symbol",
                 "trade_no")

    def __init__(self, instrument: Instrument, orders: dict[str, Order]) -> None:
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.prices = instrument.prices
        self.quantities = instrument.quantities
        self.orders = orders
        self.bids = Ladder(bids=True)
        self.asks = Ladder(bids=False)
        self.seq = 0
        self.trade_no = 0

    # ---- commands ------------------------------------------------------------------

    def place(self, command: PlaceOrder) -> EventBatch:
        """Record a new order: refuse it whole, or accept, match and rest/cancel the rest."""
        price = command.price
        if (price is not None and command.type is _LIMIT and not command.post_only
                and command.time_in_force is not _FOK and price in self.prices
                and command.quantity in self.quantities):
            reason = None  # a plain limit order on the grid: `_refusal` would pass it
        else:
            reason = self._refusal(command)
        self.seq = seq = self.seq + 1
        if reason is not None:
            return EventBatch(symbol=self.symbol, seq=seq, events=[
                OrderRejected(seq=seq, order=command, reason=reason)])
        events: list[Event] = [OrderAccepted(seq=seq, order=command)]
        self._enter(Order(command, command.order_id, command.side is _BUY, price,
                          command.quantity, command.quantity), events, seq, command.timestamp)
        return EventBatch(symbol=self.symbol, seq=seq, events=events)

    def cancel(self, order: Order, timestamp: int) -> EventBatch:
        """Cancel a resting order's whole remainder."""
        self.seq = seq = self.seq + 1
        event = self._cancel_rest(order, CancelReason.USER, seq, timestamp)
        (self.bids if order.is_buy else self.asks).remove(order)
        del self.orders[order.order_id]
        return EventBatch(symbol=self.symbol, seq=seq, events=[event])

    def modify(self, order: Order, command: ModifyOrder) -> EventBatch:
        """Amend a resting order's price and/or total quantity (see the module docstring)."""
        price, quantity, ts = command.price, command.quantity, command.timestamp
        error = self._modify_error(order, price, quantity)
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
            seq=seq, timestamp=ts, order_id=order.order_id, price=new_price,
            quantity=new_quantity, requeued=requeued)]
        if not requeued:
            order.quantity = new_quantity
            order.remaining = new_quantity - order.traded - order.cancelled
            return EventBatch(symbol=self.symbol, seq=seq, events=events)
        entry = order.requeued(new_price, new_quantity)
        order.remaining = 0
        ladder = self.bids if order.is_buy else self.asks
        ladder.remove(order)
        if price is None:
            ladder.add(entry)
            self.orders[entry.order_id] = entry
        else:
            del self.orders[order.order_id]
            self._enter(entry, events, seq, ts)
        return EventBatch(symbol=self.symbol, seq=seq, events=events)

    def expire(self, timestamp: int) -> EventBatch:
        """Session close: every resting DAY order expires (bids then asks, priority order)."""
        expiring = [order for ladder in (self.bids, self.asks) for order in ladder.orders()
                    if order.placed.time_in_force is TimeInForce.DAY]
        if not expiring:
            return EventBatch(symbol=self.symbol, seq=0, events=[])
        self.seq = seq = self.seq + 1
        events: list[Event] = []
        for order in expiring:
            events.append(OrderExpired(seq=seq, timestamp=timestamp, order_id=order.order_id,
                                       quantity=order.remaining))
            order.cancelled += order.remaining
            order.remaining = 0
            (self.bids if order.is_buy else self.asks).remove(order)
            del self.orders[order.order_id]
        return EventBatch(symbol=self.symbol, seq=seq, events=events)

    # ---- matching ------------------------------------------------------------------

    def _enter(self, taker: Order, events: list[Event], seq: int, ts: int) -> None:
        """Match `taker` if it crosses, then rest or cancel what is left of it."""
        makers = self.asks if taker.is_buy else self.bids
        heap = makers.heap
        limit_key = _NO_LIMIT if taker.price is None else taker.price * makers.sign
        if heap and heap[0] <= limit_key and not self._match(
                taker, makers, limit_key, events, seq, ts):
            return
        if not taker.remaining:
            return
        placed = taker.placed
        if placed.type is _LIMIT and placed.time_in_force in _RESTING_TIFS:
            ladder = self.bids if taker.is_buy else self.asks
            level = ladder.levels.get(taker.price)  # type: ignore[arg-type]
            if level is None:
                ladder.add(taker)
            else:  # `Ladder.add` inlined for the most common case: a level that exists
                level.append(taker)
                ladder.counts[taker.price] += 1  # type: ignore[index]
            self.orders[taker.order_id] = taker
        else:
            reason = (CancelReason.NO_LIQUIDITY if placed.type is _MARKET
                      else CancelReason.IMMEDIATE_OR_CANCEL)
            events.append(self._cancel_rest(taker, reason, seq, ts))

    def _match(self, taker: Order, makers: Ladder, limit_key: int, events: list[Event],
               seq: int, ts: int) -> bool:
        """Trade `taker` against `makers` up to `limit_key`; False if STP cancelled it.

        Hot path: locals only, one dict lookup per level, one event per fill.
        """
        levels, counts, heap, sign = makers.levels, makers.counts, makers.heap, makers.sign
        placed = taker.placed
        taker_user = placed.user_id
        stp_user = taker_user if placed.stp is not _NO_STP else None
        orders, symbol, taker_id = self.orders, self.symbol, taker.order_id
        taker_buys, aggressor = taker.is_buy, placed.side
        remaining = taker.remaining
        trade_no = self.trade_no
        traded = 0
        alive = True
        while remaining and heap:
            key = heap[0]
            if key > limit_key:
                break
            price = key * sign
            level = levels.get(price)
            if level is None:
                heapq.heappop(heap)
                continue
            live = counts[price]
            while live:
                maker = level[0]
                if not maker.remaining:  # removed earlier, reached the head only now
                    level.popleft()
                    continue
                if stp_user is not None and maker.placed.user_id == stp_user:
                    taker.remaining = remaining
                    if taker.placed.stp is not Stp.CANCEL_NEWEST:
                        live -= 1
                    alive = self._prevent_self_trade(taker, level, events, seq, ts)
                    remaining = taker.remaining
                    if not alive:
                        break
                    continue
                quantity = maker.remaining
                if quantity > remaining:
                    quantity = remaining
                trade_no += 1
                if taker_buys:
                    events.append(TradeExecuted(
                        seq=seq, timestamp=ts, symbol=symbol, trade_no=trade_no, price=price,
                        quantity=quantity, buy_order_id=taker_id, sell_order_id=maker.order_id,
                        aggressor_side=aggressor, buyer_user_id=taker_user,
                        seller_user_id=maker.placed.user_id))
                else:
                    events.append(TradeExecuted(
                        seq=seq, timestamp=ts, symbol=symbol, trade_no=trade_no, price=price,
                        quantity=quantity, buy_order_id=maker.order_id, sell_order_id=taker_id,
                        aggressor_side=aggressor, buyer_user_id=maker.placed.user_id,
                        seller_user_id=taker_user))
                maker.traded += quantity
                maker.remaining -= quantity
                if not maker.remaining:
                    level.popleft()
                    del orders[maker.order_id]
                    live -= 1
                remaining -= quantity
                traded += quantity
                if not remaining:
                    break
            if live:
                counts[price] = live
            else:
                del levels[price]
                del counts[price]
                heapq.heappop(heap)
            if not alive:
                break
        self.trade_no = trade_no
        taker.traded += traded
        taker.remaining = remaining
        return alive

    def _prevent_self_trade(
        self, taker: Order, level: deque[Order], events: list[Event], seq: int, ts: int,
    ) -> bool:
        """Apply the taker's STP mode against its own live order at the head of `level`.

        Except for CANCEL_NEWEST the maker leaves the level (the caller counts it).
        Returns False when the taker was cancelled and matching must stop.
        """
        stp = taker.placed.stp
        if stp is not Stp.CANCEL_NEWEST:
            maker = level.popleft()
            del self.orders[maker.order_id]
            events.append(self._cancel_rest(maker, CancelReason.SELF_TRADE, seq, ts))
            if stp is Stp.CANCEL_OLDEST:
                return True
        taker_event = self._cancel_rest(taker, CancelReason.SELF_TRADE, seq, ts)
        events.append(taker_event)
        return False

    # ---- checks --------------------------------------------------------------------

    def _refusal(self, command: PlaceOrder) -> RejectReason | None:
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

    def _modify_error(
        self, order: Order, price: int | None, quantity: int | None,
    ) -> tuple[RejectReason, str] | None:
        if price is None and quantity is None:
            return RejectReason.INVALID_ORDER, "give a new price and/or quantity"
        if price is not None:
            problem = self.instrument.price_error(price)
            if problem is not None:
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
        best = (self.asks if buy else self.bids).best()
        return best is not None and (price >= best if buy else price <= best)

    def _fillable(self, command: PlaceOrder) -> int:
        """How much a FOK order would fill now, honouring its self-trade prevention."""
        makers = self.bids if command.side is Side.SELL else self.asks
        limit_key = _NO_LIMIT if command.price is None else command.price * makers.sign
        stp_user = command.user_id if command.stp is not Stp.NONE else None
        total = 0
        for price in makers.prices():
            if price * makers.sign > limit_key:
                break
            for maker in makers.queue(price):
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
        event = OrderCancelled(seq=seq, timestamp=ts, order_id=order.order_id,
                               quantity=order.remaining, reason=reason)
        order.cancelled += order.remaining
        order.remaining = 0
        return event

    def resting(self) -> Iterator[Order]:
        """Every resting order: bids then asks, each in priority order."""
        yield from self.bids.orders()
        yield from self.asks.orders()

    def depth(self, n: int) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """Top `n` aggregated levels per side: (price, total remaining, orders), best first."""
        return self._aggregate(self.bids, n), self._aggregate(self.asks, n)

    @staticmethod
    def _aggregate(ladder: Ladder, n: int) -> list[tuple[int, int, int]]:
        return [(price, sum(o.remaining for o in ladder.levels[price]), ladder.counts[price])
                for price in ladder.top(n)]

    def check(self) -> None:
        """Raise AssertionError if an invariant of the module docstring is broken."""
        for ladder, buy in ((self.bids, True), (self.asks, False)):
            assert ladder.levels.keys() == ladder.counts.keys(), "levels and counts differ"
            for price in ladder.levels:
                queue = ladder.queue(price)
                assert len(queue) == ladder.counts[price] > 0, f"level {price} miscounted"
                for order in queue:
                    assert order.is_buy is buy, order
                    assert order.price == price, order
                    assert order.rests, order
                    assert order.remaining + order.traded + order.cancelled == order.quantity
                    assert self.orders.get(order.order_id) is order, order
        bid, ask = self.bids.best(), self.asks.best()
        assert bid is None or ask is None or bid < ask, f"crossed book {bid} >= {ask}"
