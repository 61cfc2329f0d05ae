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
    remaining_quantity,
)

ACTIVE_STATUSES = frozenset((OrderStatus.ACTIVE, OrderStatus.PARTIALLY_FILLED))


class OrderState(msgspec.Struct, gc=False):
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
        # Every field by position, in the order declared: a quarter of the time that
        # keyword arguments take, and this runs for every order placed or replayed.
        return cls(order.order_id, order.symbol, order.side, order.type,
                   order.time_in_force, order.post_only, order.stp, order.user_id,
                   order.client_order_id, order.price, order.quantity, order.quantity,
                   0, 0, 0, OrderStatus.ACTIVE, None, None, order.timestamp,
                   order.timestamp, seq, key_id)


def order_ids(event: Event) -> tuple[str, ...]:
    """The orders an event changes."""
    if type(event) is TradeExecuted:
        return (event.buy_order_id, event.sell_order_id)
    if type(event) is OrderAccepted or type(event) is OrderRejected:
        return (event.order.order_id,)
    if (type(event) is OrderCancelled or type(event) is OrderModified
            or type(event) is OrderExpired):
        return (event.order_id,)
    return ()


def apply(states: dict[str, OrderState], event: Event, key_id: str | None = None) -> None:
    """Fold one event into `states` (order id -> state), creating orders it places;
    `key_id` is its batch's, the key that issued the command.

    Orders an event names must already be in `states`, except those it creates. Every
    journal reader runs it for every event, so it tests the event's exact type, most
    frequent first (a `match` on class patterns is a chain of isinstance calls).
    """
    if type(event) is TradeExecuted:
        quantity, seq, timestamp = event.quantity, event.seq, event.timestamp
        for order_id in (event.buy_order_id, event.sell_order_id):
            state = states[order_id]
            state.traded += quantity
            state.remaining -= quantity
            state.notional += event.price * quantity
            state.status = (OrderStatus.FILLED if not state.remaining
                            else OrderStatus.PARTIALLY_FILLED)
            state.seq, state.updated_at = seq, timestamp
    elif type(event) is OrderAccepted:
        states[event.order.order_id] = OrderState.placed(event.order, event.seq, key_id)
    elif type(event) is OrderCancelled:
        state = states[event.order_id]
        state.cancelled += event.quantity
        state.remaining -= event.quantity
        state.status, state.cancel_reason = OrderStatus.CANCELLED, event.reason
        _touch(state, event.seq, event.timestamp)
    elif type(event) is OrderModified:
        state = states[event.order_id]
        state.price, state.quantity = event.price, event.quantity
        state.remaining = remaining_quantity(event.quantity, state.traded, state.cancelled)
        _touch(state, event.seq, event.timestamp)
    elif type(event) is OrderExpired:
        state = states[event.order_id]
        state.cancelled += event.quantity
        state.remaining -= event.quantity
        state.status = OrderStatus.EXPIRED
        _touch(state, event.seq, event.timestamp)
    elif type(event) is OrderRejected:
        state = OrderState.placed(event.order, event.seq, key_id)
        state.cancelled, state.remaining = state.quantity, 0
        state.status, state.reject_reason = OrderStatus.REJECTED, event.reason
        states[state.order_id] = state


def _touch(state: OrderState, seq: int, timestamp: int) -> None:
    state.seq, state.updated_at = seq, timestamp
