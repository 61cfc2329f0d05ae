"""What svc_orders knows about orders beyond the book: full state, idempotency keys.

Every journaled batch is folded here with `common.orderstate.apply`, the same fold the
projection uses. Live orders are kept in full; finished ones stay in a bounded recent
cache (older ones are read from the PostgreSQL projection). Idempotency keys are kept
for every order ever placed so a retry is recognised after any restart.
"""

from __future__ import annotations

import msgspec

from common.messages import (
    EventBatch,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderRejected,
    OrderStatus,
    TradeExecuted,
)
from common.orderstate import OrderState, apply

RECENT_FINISHED = 100_000  # at most; at least half of it

IdempotencyKey = tuple[str | None, str]  # (user_id, client_order_id)


class StoreState(msgspec.Struct, frozen=True, array_like=True):
    """What a service snapshot keeps of the store: live orders and idempotency keys
    (after a restart, finished orders are read from the projection)."""

    live: list[OrderState]
    keys: list[tuple[str | None, str, str]]  # user_id, key, order_id


class OrderStore:
    def __init__(self, recent_limit: int = RECENT_FINISHED) -> None:
        self.live: dict[str, OrderState] = {}
        # Finished orders in two generations: when the newer holds half the limit, it
        # becomes the older and the older is dropped whole (no eviction per order).
        self.recent: dict[str, OrderState] = {}
        self.older: dict[str, OrderState] = {}
        self.keys: dict[IdempotencyKey, str] = {}
        self.generation = max(1, recent_limit // 2)

    def get(self, order_id: str) -> OrderState | None:
        return (self.live.get(order_id) or self.recent.get(order_id)
                or self.older.get(order_id))

    def by_key(self, user_id: str | None, key: str) -> str | None:
        """The order placed earlier with this idempotency key, if any."""
        return self.keys.get((user_id, key))

    def apply(self, batch: EventBatch) -> None:
        """Fold one journaled batch (the idempotency key is the `client_order_id`);
        the orders it finishes move to the recent ones once the whole batch is folded.

        Runs for every command and every replayed one: each event's exact type is
        tested once, and only the events that can finish an order look it up again.
        """
        live, key_id = self.live, batch.key_id
        finished: list[str] = []
        for event in batch.events:
            apply(live, event, key_id)
            if type(event) is TradeExecuted:
                for order_id in (event.buy_order_id, event.sell_order_id):
                    if live[order_id].status is OrderStatus.FILLED:
                        finished.append(order_id)
            elif type(event) is OrderCancelled or type(event) is OrderExpired:
                finished.append(event.order_id)
            elif type(event) is OrderAccepted or type(event) is OrderRejected:
                order = event.order
                if order.client_order_id is not None:
                    self.keys[(order.user_id, order.client_order_id)] = order.order_id
                if type(event) is OrderRejected:
                    finished.append(order.order_id)
        for order_id in finished:
            state = live.pop(order_id, None)
            if state is not None:
                self._remember(state)

    def _remember(self, state: OrderState) -> None:
        recent = self.recent
        recent[state.order_id] = state
        if len(recent) >= self.generation:
            self.older, self.recent = recent, {}

    def state(self) -> StoreState:
        return StoreState(list(self.live.values()),
                          [(user, key, oid) for (user, key), oid in self.keys.items()])

    @classmethod
    def restore(cls, state: StoreState) -> OrderStore:
        store = cls()
        store.live = {order.order_id: order for order in state.live}
        store.keys = {(user, key): oid for user, key, oid in state.keys}
        return store
