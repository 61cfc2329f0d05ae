"""What svc_orders knows about orders beyond the book: full state, idempotency keys.

Every journaled batch is folded here with `common.orderstate.apply`, the same fold the
projection uses. Live orders are kept in full; finished ones stay in a bounded recent
cache (older ones are read from the PostgreSQL projection). Idempotency keys are kept
for every order ever placed so a retry is recognised after any restart.
"""

from __future__ import annotations

from collections import OrderedDict

import msgspec

from common.messages import EventBatch, OrderAccepted, OrderRejected
from common.orderstate import ACTIVE_STATUSES, OrderState, apply, order_ids

RECENT_FINISHED = 100_000

IdempotencyKey = tuple[str | None, str]  # (user_id, client_order_id)


class StoreState(msgspec.Struct, frozen=True, array_like=True):
    """What a service snapshot keeps of the store: live orders and idempotency keys
    (after a restart, finished orders are read from the projection)."""

    live: list[OrderState]
    keys: list[tuple[str | None, str, str]]  # user_id, key, order_id


class OrderStore:
    def __init__(self, recent_limit: int = RECENT_FINISHED) -> None:
        self.live: dict[str, OrderState] = {}
        self.recent: OrderedDict[str, OrderState] = OrderedDict()
        self.keys: dict[IdempotencyKey, str] = {}
        self.recent_limit = recent_limit

    def get(self, order_id: str) -> OrderState | None:
        return self.live.get(order_id) or self.recent.get(order_id)

    def by_key(self, user_id: str | None, key: str) -> str | None:
        """The order placed earlier with this idempotency key, if any."""
        return self.keys.get((user_id, key))

    def apply(self, batch: EventBatch) -> None:
        """Fold one journaled batch (the idempotency key is the `client_order_id`).

        Runs for every command and every replayed one: no allocation it can avoid.
        """
        live, key_id, events = self.live, batch.key_id, batch.events
        for event in events:
            kind = type(event)
            if kind is OrderAccepted or kind is OrderRejected:
                order = event.order  # type: ignore[union-attr]
                if order.client_order_id is not None:
                    self.keys[(order.user_id, order.client_order_id)] = order.order_id
            apply(live, event, key_id)
        for event in events:
            for order_id in order_ids(event):
                state = live.get(order_id)
                if state is not None and state.status not in ACTIVE_STATUSES:
                    del live[order_id]
                    self._remember(state)

    def _remember(self, state: OrderState) -> None:
        self.recent[state.order_id] = state
        if len(self.recent) > self.recent_limit:
            self.recent.popitem(last=False)

    def state(self) -> StoreState:
        return StoreState(list(self.live.values()),
                          [(user, key, oid) for (user, key), oid in self.keys.items()])

    @classmethod
    def restore(cls, state: StoreState) -> OrderStore:
        store = cls()
        store.live = {order.order_id: order for order in state.live}
        store.keys = {(user, key): oid for user, key, oid in state.keys}
        return store
