"""A bounded crossing load on svc_orders that remembers every answer.

Clients place limit orders around one price, so about half of them trade, each with a
`client_order_id` of its own. A 2xx answer is an acknowledged order with its fills; a
503, a timeout or a dropped connection leaves the outcome open (the journal may have
stored the command just before the failure), to be settled later by looking the
`client_order_id` up. Anything else is a failure of the test.

Bounded in every way: a fixed number of clients, each pacing itself, sending at most
`limit` orders in all for at most `seconds`, and stopping at `stop()`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

USERS = [f"7d3f6a2e-0000-4000-8000-00000000000{n}" for n in range(4)]
PRICES = [f"{100 + tick / 100:.2f}" for tick in range(-6, 7)]  # 13 levels around 100.00
PACE = 0.04  # seconds a client waits between two orders
BACKOFF = 0.5  # seconds a client waits after an open outcome, as a polite client does
ANSWER_TIMEOUT = 6.0  # seconds: longer than the journal's timeout, short of a hang


@dataclass
class Load:
    """Clients placing crossing orders on `orders_url` until stopped, `limit` orders are
    sent or `seconds` have passed."""

    http: aiohttp.ClientSession
    orders_url: str
    name: str
    clients: int = 16
    limit: int = 4_000
    seconds: float = 60.0
    # Where each order goes, if not always to `orders_url` (e.g. whichever instance leads).
    target: Callable[[], str] | None = None
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # request bodies, by client id
    acknowledged: dict[str, dict[str, Any]] = field(default_factory=dict)  # by client id
    acknowledged_at: dict[str, float] = field(default_factory=dict)  # monotonic time
    acknowledged_by: dict[str, str] = field(default_factory=dict)  # the URL that answered
    open: set[str] = field(default_factory=set)  # client order ids with an open outcome
    failed: list[tuple[float, float]] = field(default_factory=list)  # open: sent, given up
    _sent: int = 0
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.seconds, self._stopping.set)
        self._tasks = [asyncio.create_task(self._client(n)) for n in range(self.clients)]

    async def stop(self) -> None:
        """Stop sending and wait for the answers still on their way."""
        self._stopping.set()
        if self._timer is not None:
            self._timer.cancel()
        await asyncio.gather(*self._tasks)

    def acknowledged_since(self, moment: float) -> list[dict[str, Any]]:
        """The orders acknowledged at or after `moment` (monotonic time)."""
        return [self.acknowledged[client_order_id]
                for client_order_id, at in self.acknowledged_at.items() if at >= moment]

    async def _client(self, number: int) -> None:
        rng = random.Random(f"{self.name}-{number}")
        while not self._stopping.is_set() and self._sent < self.limit:
            self._sent += 1
            client_order_id = f"{self.name}-{number}-{self._sent}"
            body = {"side": rng.choice(["buy", "sell"]), "price": rng.choice(PRICES),
                    "quantity": rng.randint(1, 20), "user_id": rng.choice(USERS),
                    "client_order_id": client_order_id}
            self.sent[client_order_id] = body
            url = self.orders_url if self.target is None else self.target()
            sent = time.monotonic()
            answered = await self._place(url, body)
            if answered is None:
                self.open.add(client_order_id)
                self.failed.append((sent, time.monotonic()))
                await asyncio.sleep(BACKOFF)
                continue
            self.acknowledged[client_order_id] = answered
            self.acknowledged_at[client_order_id] = time.monotonic()
            self.acknowledged_by[client_order_id] = url
            await asyncio.sleep(PACE)

    def unavailable(self) -> float:
        """Seconds from the first failed order's sending to the last one's end (0 if
        none failed)."""
        if not self.failed:
            return 0.0
        return max(end for _, end in self.failed) - min(sent for sent, _ in self.failed)

    async def _place(self, url: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The order with its fills, or None if the outcome is open."""
        try:
            async with self.http.post(url, json=body,
                                      timeout=aiohttp.ClientTimeout(total=ANSWER_TIMEOUT)
                                      ) as response:
                answer: dict[str, Any] = await response.json()
        except (aiohttp.ClientError, TimeoutError):
            return None
        if response.status == 503:
            return None
        assert response.status == 201, (response.status, answer)
        return answer
