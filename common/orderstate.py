"""What the journal's events mean for one order: the fold every reader of the journal uses.

svc_orders answers commands with it and svc_trades projects it into PostgreSQL, so both
agree on status, counters and reasons by construction. Integers only (price units).
"""

from __future__ import annotations

import msgspec

from common.messages import (
    CancelReason,
    Event,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderModified,
    OrderRejected,
    OrderStatus,
    OrderType,
    PlaceOrder,
    RejectReason,
    Side,
    Stp,
    TimeInForce,
    TradeExecuted,
)

ACTIVE_STATUSES = frozenset((OrderStatus.ACTIVE, OrderStatus.PARTIALLY_FILLED))


class OrderState(msgspec.Struct, kw_only=True, gc=False):
    """One order as the events so far describe it (scalars only, so never in a
    reference cycle: untracked by the garbage collector, which keeps full collections
    short however many orders the store holds)."""

    order_id: str
    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    post_only: bool
    stp: Stp
    user_id: str | None
    client_order_id: str | None
    price: int | None
    quantity: int
    remaining: int
    traded: int = 0
    cancelled: int = 0
    notional: int = 0  # sum of price * quantity over its trades, for the average price
    status: OrderStatus = OrderStatus.ACTIVE
    cancel_reason: CancelReason | None = None
    reject_reason: RejectReason | None = None
    created_at: int = 0
    updated_at: int = 0
    seq: int = 0
    issued_by_key: str | None = None  # the API key that placed it (None with auth off)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @classmethod
    def placed(cls, order: PlaceOrder, seq: int, key_id: str | None = None) -> OrderState:
        return cls(
            order_id=order.order_id, symbol=order.symbol, side=order.side, type=order.type,
            time_in_force=order.time_in_force, post_only=order.post_only, stp=order.stp,
            user_id=order.user_id, client_order_id=order.client_order_id, price=order.price,
            quantity=order.quantity, remaining=order.quantity, created_at=order.timestamp,
            updated_at=order.timestamp, seq=seq, issued_by_key=key_id)


def order_ids(event: Event) -> tuple[str, ...]:
    """The orders an event changes."""
    match event:
        case OrderAccepted() | OrderRejected():
            return (event.order.order_id,)
        case TradeExecuted():
            return (event.buy_order_id, event.sell_order_id)
        case OrderModified() | OrderCancelled() | OrderExpired():
            return (event.order_id,)
    return ()


def apply(states: dict[str, OrderState], event: Event, key_id: str | None = None) -> None:
    """Fold one event into `states` (order id -> state), creating orders it places;
    `key_id` is its batch's, the key that issued the command.

    Orders an event names must already be in `states`, except those it creates.
    """
    match event:
        case OrderAccepted():
            states[event.order.order_id] = OrderState.placed(event.order, event.seq, key_id)
        case OrderRejected():
            state = OrderState.placed(event.order, event.seq, key_id)
            state.cancelled, state.remaining = state.quantity, 0
            state.status, state.reject_reason = OrderStatus.REJECTED, event.reason
            states[state.order_id] = state
        case TradeExecuted():
            for order_id in (event.buy_order_id, event.sell_order_id):
                state = states[order_id]
                state.traded += event.quantity
                state.remaining -= event.quantity
                state.notional += event.price * event.quantity
                state.status = (OrderStatus.FILLED if not state.remaining
                                else OrderStatus.PARTIALLY_FILLED)
                _touch(state, event.seq, event.timestamp)
        case OrderModified():
            state = states[event.order_id]
            state.price, state.quantity = event.price, event.quantity
            state.remaining = event.quantity - state.traded - state.cancelled
            _touch(state, event.seq, event.timestamp)
        case OrderCancelled():
            state = states[event.order_id]
            state.cancelled += event.quantity
            state.remaining -= event.quantity
            state.status, state.cancel_reason = OrderStatus.CANCELLED, event.reason
            _touch(state, event.seq, event.timestamp)
        case OrderExpired():
            state = states[event.order_id]
            state.cancelled += event.quantity
            state.remaining -= event.quantity
            state.status = OrderStatus.EXPIRED
            _touch(state, event.seq, event.timestamp)


def _touch(state: OrderState, seq: int, timestamp: int) -> None:
    state.seq, state.updated_at = seq, timestamp
