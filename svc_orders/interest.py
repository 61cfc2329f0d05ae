"""Which users anyone watches: svc_orders builds per-user order messages for those only.

Building a user's `md.orders` message costs an order view or two per journaled batch, a
fifth of a command's CPU when every order has a user. Most users have no WebSocket open,
so each svc_stream instance announces the users it has `orders` subscribers for (at
once when one is added, and again well before its announcement expires); an instance that
stops announcing is forgotten when its last announcement expires.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec
import structlog
from nats.aio.msg import Msg

from common.messages import OrdersInterest, interest_decoder

log = structlog.get_logger(__name__)


class Interest:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_instance: dict[str, tuple[float, frozenset[str]]] = {}  # expiry, users
        self._users: frozenset[str] = frozenset()
        self._next_expiry = float("inf")

    def announce(self, interest: OrdersInterest) -> None:
        self._by_instance[interest.instance] = (self._clock() + interest.ttl,
                                                frozenset(interest.user_ids))
        self._refresh()

    async def on_message(self, msg: Msg) -> None:
        try:
            self.announce(interest_decoder.decode(msg.data))
        except msgspec.DecodeError as error:
            log.warning("unexpected interest payload", error=str(error))

    def users(self) -> frozenset[str]:
        """The users watched now."""
        if self._clock() >= self._next_expiry:
            self._refresh()
        return self._users

    def _refresh(self) -> None:
        now = self._clock()
        self._by_instance = {instance: entry for instance, entry in self._by_instance.items()
                             if entry[0] > now}
        self._users = frozenset().union(*(users for _, users in self._by_instance.values()))
        self._next_expiry = min((expiry for expiry, _ in self._by_instance.values()),
                                default=float("inf"))
