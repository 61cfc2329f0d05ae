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


class Book:
    __slots__ = ("asks", "bids", "instrument", "orders", "seq", "symbol", "trade_no")

    def __init__(self, instrument: Instrument, orders: dict[str, Order]) -> None:
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.orders = orders
        self.bids = Ladder(bids=True)
        self.asks = Ladder(bids=False)
        self.seq = 0
        self.trade_no = 0

    # ---- commands ------------------------------------------------------------------

    def place(self, command: PlaceOrder) -> EventBatch:
        """Record a new order: refuse it whole, or accept, match and rest/cancel the rest."""
        reason = self._refusal(command)
        self.seq = seq = self.seq + 1
        ts = command.timestamp
        if reason is not None:
            return EventBatch(symbol=self.symbol, seq=seq, events=[OrderRejected(
                seq=seq, timestamp=ts, order_id=command.order_id, symbol=self.symbol,
                side=command.side, type=command.type, time_in_force=command.time_in_force,
                quantity=command.quantity, price=command.price, reason=reason,
                post_only=command.post_only, stp=command.stp, user_id=command.user_id,
                client_order_id=command.client_order_id)])
        order = Order.from_command(command)
        events: list[Event] = [OrderAccepted(
            seq=seq, timestamp=ts, order_id=order.order_id, symbol=self.symbol,
            side=order.side, type=order.type, time_in_force=order.time_in_force,
            quantity=order.quantity, price=order.price, post_only=order.post_only,
            stp=order.stp, user_id=order.user_id, client_order_id=order.client_order_id)]
        self._enter(order, events, seq, ts)
        return EventBatch(symbol=self.symbol, seq=seq, events=events)

    def cancel(self, order: Order, timestamp: int) -> EventBatch:
        """Cancel a resting order's whole remainder."""
        self.seq = seq = self.seq + 1
        self._ladder(order.is_buy).remove(order)
        del self.orders[order.order_id]
        event = self._cancel_rest(order, CancelReason.USER, seq, timestamp)
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
        ladder = self._ladder(order.is_buy)
        if not requeued:
            order.quantity = new_quantity
            order.remaining = new_quantity - order.traded - order.cancelled
        elif price is None:
            ladder.remove(order)
            order.quantity = new_quantity
            order.remaining = new_quantity - order.traded - order.cancelled
            ladder.add(order)
        else:
            ladder.remove(order)
            del self.orders[order.order_id]
            order.price = new_price
            order.quantity = new_quantity
            order.remaining = new_quantity - order.traded - order.cancelled
            self._enter(order, events, seq, ts)
        return EventBatch(symbol=self.symbol, seq=seq, events=events)

    def expire(self, timestamp: int) -> EventBatch:
        """Session close: every resting DAY order expires (bids then asks, priority order)."""
        expiring = [order for ladder in (self.bids, self.asks) for order in ladder.orders()
                    if order.time_in_force is TimeInForce.DAY]
        if not expiring:
            return EventBatch(symbol=self.symbol, seq=0, events=[])
        self.seq = seq = self.seq + 1
        events: list[Event] = []
        for order in expiring:
            self._ladder(order.is_buy).remove(order)
            del self.orders[order.order_id]
            events.append(OrderExpired(seq=seq, timestamp=timestamp, order_id=order.order_id,
                                       quantity=order.remaining))
            order.cancelled += order.remaining
            order.remaining = 0
        return EventBatch(symbol=self.symbol, seq=seq, events=events)

    # ---- matching ------------------------------------------------------------------

    def _enter(self, order: Order, events: list[Event], seq: int, ts: int) -> None:
        """Match `order` as the taker, then rest or cancel what is left of it."""
        if not self._match(order, events, seq, ts):
            return
        if not order.remaining:
            return
        if order.rests:
            self._ladder(order.is_buy).add(order)
            self.orders[order.order_id] = order
        else:
            reason = (CancelReason.NO_LIQUIDITY if order.type is OrderType.MARKET
                      else CancelReason.IMMEDIATE_OR_CANCEL)
            events.append(self._cancel_rest(order, reason, seq, ts))

    def _match(self, taker: Order, events: list[Event], seq: int, ts: int) -> bool:
        """Trade `taker` against the other side; False if self-trade prevention cancelled it.

        Hot path: locals only, one dict lookup per level, one event per fill.
        """
        makers = self._ladder(not taker.is_buy)
        levels, heap, sign = makers.levels, makers.heap, makers.sign
        limit_key = _NO_LIMIT if taker.price is None else taker.price * sign
        stp_user = taker.user_id if taker.stp is not Stp.NONE else None
        orders, symbol, taker_id = self.orders, self.symbol, taker.order_id
        taker_buys, taker_user, aggressor = taker.is_buy, taker.user_id, taker.side
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
            while level:
                maker = level[0]
                if stp_user is not None and maker.user_id == stp_user:
                    taker.remaining = remaining
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
                        seller_user_id=maker.user_id))
                else:
                    events.append(TradeExecuted(
                        seq=seq, timestamp=ts, symbol=symbol, trade_no=trade_no, price=price,
                        quantity=quantity, buy_order_id=maker.order_id, sell_order_id=taker_id,
                        aggressor_side=aggressor, buyer_user_id=maker.user_id,
                        seller_user_id=taker_user))
                maker.traded += quantity
                maker.remaining -= quantity
                if not maker.remaining:
                    level.popleft()
                    del orders[maker.order_id]
                remaining -= quantity
                traded += quantity
                if not remaining:
                    break
            if not level:
                del levels[price]
                heapq.heappop(heap)
            if not alive:
                break
        taker.traded += traded
        taker.remaining = remaining
        self.trade_no = trade_no
        return alive

    def _prevent_self_trade(
        self, taker: Order, level: deque[Order], events: list[Event], seq: int, ts: int,
    ) -> bool:
        """Apply the taker's STP mode against its own order at the head of `level`.

        Returns False when the taker was cancelled and matching must stop.
        """
        stp = taker.stp
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
        instrument = self.instrument
        if command.type is OrderType.MARKET:
            if command.price is not None:
                return RejectReason.INVALID_ORDER
            if command.post_only:
                return RejectReason.INVALID_ORDER
            if command.time_in_force not in (TimeInForce.IOC, TimeInForce.FOK):
                return RejectReason.INVALID_ORDER
        elif command.price is None:
            return RejectReason.INVALID_ORDER
        if instrument.quantity_error(command.quantity) is not None:
            return RejectReason.INVALID_QUANTITY
        if command.price is not None:
            if instrument.price_error(command.price) is not None:
                return RejectReason.INVALID_PRICE
            if command.post_only and self._crosses(command.side is Side.BUY, command.price):
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
        if order.post_only and price is not None and self._crosses(order.is_buy, price):
            return RejectReason.POST_ONLY_WOULD_CROSS, "post-only order would take liquidity"
        return None

    def _crosses(self, buy: bool, price: int) -> bool:
        """Whether a `buy`/sell order at `price` would take liquidity now."""
        best = (self.asks if buy else self.bids).best()
        return best is not None and (price >= best if buy else price <= best)

    def _fillable(self, command: PlaceOrder) -> int:
        """How much a FOK order would fill now, honouring its self-trade prevention."""
        makers = self._ladder(command.side is not Side.BUY)
        limit_key = _NO_LIMIT if command.price is None else command.price * makers.sign
        stp_user = command.user_id if command.stp is not Stp.NONE else None
        total = 0
        for price in makers.prices():
            if price * makers.sign > limit_key:
                break
            for maker in makers.levels[price]:
                if stp_user is not None and maker.user_id == stp_user:
                    if command.stp is not Stp.CANCEL_OLDEST:
                        return total
                    continue
                total += maker.remaining
                if total >= command.quantity:
                    return total
        return total

    # ---- helpers and views -----------------------------------------------------------

    def _ladder(self, buy: bool) -> Ladder:
        return self.bids if buy else self.asks

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
        levels = ladder.levels
        return [(price, sum(o.remaining for o in levels[price]), len(levels[price]))
                for price in ladder.top(n)]

    def check(self) -> None:
        """Raise AssertionError if an invariant of the module docstring is broken."""
        for ladder, buy in ((self.bids, True), (self.asks, False)):
            for price, level in ladder.levels.items():
                assert level, f"empty level {price}"
                for order in level:
                    assert order.is_buy is buy, order
                    assert order.price == price, order
                    assert order.rests, order
                    assert order.remaining > 0, order
                    assert order.remaining + order.traded + order.cancelled == order.quantity
                    assert self.orders.get(order.order_id) is order, order
        bid, ask = self.bids.best(), self.asks.best()
        assert bid is None or ask is None or bid < ask, f"crossed book {bid} >= {ask}"
