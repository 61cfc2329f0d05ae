"""The fold of journal events into order state, shared by svc_orders and svc_trades."""

from common.messages import (
    CancelReason,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderModified,
    OrderRejected,
    OrderStatus,
    PlaceOrder,
    RejectReason,
    Side,
    TimeInForce,
    TradeExecuted,
)
from common.orderstate import OrderState, apply, order_ids


def place(order_id: str, side: Side, quantity: int, tif: TimeInForce = TimeInForce.GTC,
          ) -> PlaceOrder:
    return PlaceOrder(order_id=order_id, symbol="S", side=side, quantity=quantity, price=100,
                      time_in_force=tif, timestamp=1)


def trade(seq: int, quantity: int, price: int = 100) -> TradeExecuted:
    return TradeExecuted(seq=seq, timestamp=seq, symbol="S", trade_no=seq, price=price,
                         quantity=quantity, buy_order_id="b", sell_order_id="s",
                         aggressor_side=Side.SELL)


def conserved(state: OrderState) -> bool:
    return state.quantity == state.remaining + state.traded + state.cancelled


def test_fills_modifies_and_cancels_keep_conservation() -> None:
    states: dict[str, OrderState] = {}
    apply(states, OrderAccepted(seq=1, order=place("b", Side.BUY, 10)))
    apply(states, OrderAccepted(seq=2, order=place("s", Side.SELL, 4)))
    apply(states, trade(2, 4, price=100))
    buy, sell = states["b"], states["s"]
    assert (buy.status, buy.remaining, buy.traded, buy.notional) == (
        OrderStatus.PARTIALLY_FILLED, 6, 4, 400)
    assert (sell.status, sell.remaining, sell.is_active) == (OrderStatus.FILLED, 0, False)
    apply(states, OrderModified(seq=3, timestamp=3, order_id="b", price=101, quantity=8,
                                requeued=False))
    assert (buy.price, buy.quantity, buy.remaining, buy.seq) == (101, 8, 4, 3)
    apply(states, OrderCancelled(seq=4, timestamp=4, order_id="b", quantity=4,
                                 reason=CancelReason.USER))
    assert (buy.status, buy.cancelled, buy.cancel_reason, buy.updated_at) == (
        OrderStatus.CANCELLED, 4, CancelReason.USER, 4)
    assert all(conserved(state) for state in states.values())


def test_rejections_and_expiry_are_terminal() -> None:
    states: dict[str, OrderState] = {}
    apply(states, OrderRejected(seq=1, order=place("r", Side.BUY, 5),
                                reason=RejectReason.POST_ONLY_WOULD_CROSS))
    rejected = states["r"]
    assert (rejected.status, rejected.reject_reason, rejected.is_active) == (
        OrderStatus.REJECTED, RejectReason.POST_ONLY_WOULD_CROSS, False)
    apply(states, OrderAccepted(seq=2, order=place("d", Side.SELL, 5, TimeInForce.DAY)))
    apply(states, OrderExpired(seq=3, timestamp=9, order_id="d", quantity=5))
    assert (states["d"].status, states["d"].cancelled) == (OrderStatus.EXPIRED, 5)
    assert all(conserved(state) for state in states.values())
    assert order_ids(trade(1, 1)) == ("b", "s")
