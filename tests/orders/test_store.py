"""The order store: live orders, the recent finished ones and idempotency keys, folded
from journaled batches."""

import pytest

from common.messages import (
    OrderAccepted,
    OrderRejected,
    OrderStatus,
    OrderType,
    Side,
    Stp,
    TimeInForce,
)
from common.orderstate import OrderState, apply
from svc_orders.store import OrderStore
from tests.trades.journal import random_batches


@pytest.mark.parametrize("seed", range(5))
def test_the_store_holds_what_a_plain_fold_of_every_event_says(seed: int) -> None:
    """Live orders are exactly the active ones, every finished one is recent (the limit
    is not reached here), and every client order id names its order."""
    batches = random_batches(3_000, seed)
    store, everything = OrderStore(), dict[str, OrderState]()
    for batch in batches:
        store.apply(batch)
        for event in batch.events:
            apply(everything, event, batch.key_id)
    active = {oid for oid, state in everything.items() if state.is_active}
    assert set(store.live) == active
    assert set(store.recent) | set(store.older) == set(everything) - active
    assert all(store.get(oid) == state for oid, state in everything.items())
    placed = [event.order for batch in batches for event in batch.events
              if isinstance(event, OrderAccepted | OrderRejected)]
    assert all(store.by_key(order.user_id, order.client_order_id) == order.order_id
               for order in placed if order.client_order_id is not None)
    assert any(order.client_order_id is not None for order in placed)


def test_the_newest_finished_orders_are_kept_within_the_limit() -> None:
    """Between half the limit and the limit of the newest finished orders stay; older
    ones are forgotten (the projection answers for them)."""
    store = OrderStore(recent_limit=10)
    for n in range(23):
        store._remember(finished(n))
        kept = {**store.older, **store.recent}
        assert 5 <= len(kept) <= 10 or n < 5
        assert all(str(m) in kept for m in range(max(0, n - 4), n + 1))
        assert all(store.get(str(m)) is None for m in range(n - 10))


def finished(n: int) -> OrderState:
    return OrderState(str(n), "DEFAULT", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, False,
                      Stp.NONE, None, None, 100, 1, 0, status=OrderStatus.FILLED)
