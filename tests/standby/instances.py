"""Which svc_orders instance leads, as a load balancer sees it: each one's /ready/,
probed every few milliseconds in the background."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

PROBE_EVERY = 0.05  # seconds
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=0.5)


@dataclass
class Instances:
    http: aiohttp.ClientSession
    urls: list[str]  # base URLs
    leader: str | None = None  # the one that answered ready last
    # (monotonic, leader) each time one leads after another or after none did
    changes: list[tuple[float, str]] = field(default_factory=list)
    both_ready: int = 0  # rounds in which more than one answered ready
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Instances:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def orders(self) -> str:
        """Where the next order goes: the leader, else the first instance."""
        return f"{self.leader or self.urls[0]}/orders/"

    def led_by_other_since(self, old: str) -> float | None:
        """When an instance other than `old` was first seen leading (monotonic)."""
        return next((at for at, url in self.changes if url != old), None)

    def led_again_since(self, moment: float) -> float | None:
        """When an instance was first seen leading after none did, since `moment` (a
        killed leader's replacement may be itself, restarted, if it wins the lease)."""
        return next((at for at, _ in self.changes if at > moment), None)

    async def _watch(self) -> None:
        led = False
        while True:
            states = await asyncio.gather(*(self._ready(url) for url in self.urls))
            ready = [url for url, state in zip(self.urls, states, strict=True) if state]
            if len(ready) > 1:
                self.both_ready += 1
            if ready and (ready[0] != self.leader or not led):
                self.leader = ready[0]
                self.changes.append((time.monotonic(), ready[0]))
            led = bool(ready)
            await asyncio.sleep(PROBE_EVERY)

    async def _ready(self, url: str) -> bool:
        try:
            async with self.http.get(f"{url}/ready/", timeout=PROBE_TIMEOUT) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False
