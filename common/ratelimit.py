"""Rate limits per key, per client address, and on failed authentications.

Each request is counted in this process's memory, with no network round trip (and no
coroutine: counting never waits): a sliding
window counter per key or address (the current fixed window's count plus the previous
window's, weighted by how much of it still overlaps the sliding window). Redis makes the
instances of a service share their counts: every `SYNC_INTERVAL` one pipelined round trip
adds each counter's new hits to its Redis counter (INCRBY, expiring after two windows)
and reads back the total, so each instance learns what the others counted.

The trade-off, measured in `python -m ops.bench.api`: counting in Redis on every request
(the `limits` library's strategies) cost three round trips, ~0.25 ms of the service's
CPU, more than the rest of a signed order; here a request costs a dictionary look-up.
In exchange, the instances' view of each other is up to one interval old: with N
instances, a key may exceed its limit by what the other N - 1 let through in one
interval (0.1 s: 3 requests at the default 30 a second). One instance alone is exact.
While Redis is down, counting simply goes on in memory (the fallback the contract asks
for): the sync logs the outage once and its recovery once.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import NamedTuple

import msgspec
import redis.exceptions
import structlog
from aiohttp import hdrs
from multidict import istr
from redis.asyncio import Redis

from common.config import Settings
from common.tasks import stop_tasks

log = structlog.get_logger(__name__)

REDIS_TIMEOUT = 0.25  # seconds a sync may wait on Redis before counting it as down
SYNC_INTERVAL = 0.1  # seconds between two syncs with Redis
KEY_PREFIX = "ex-rate"
_REDIS_FAILURES = (redis.exceptions.RedisError, OSError, TimeoutError)
_PERIODS = {"second": 1, "minute": 60, "hour": 3600}


class Quota(msgspec.Struct, frozen=True, gc=False):
    """One limit's state after a request: what the RateLimit-* headers say. (A Struct:
    one is made per request, and msgspec builds it in C; a NamedTuple's constructor is
    Python, four times slower.)"""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # whole seconds until a request is allowed again / the window frees up

    def add_headers(self, headers: MutableMapping[str, str]) -> None:
        headers[_LIMIT] = _text(self.limit)
        headers[_REMAINING] = _text(self.remaining)
        headers[_RESET] = _text(self.reset)
        if not self.allowed:
            headers[hdrs.RETRY_AFTER] = _text(max(1, self.reset))


# Header names as aiohttp's own are: case-insensitive strings whose folded form is made
# once, not on every answer.
_LIMIT, _REMAINING, _RESET = (istr(name) for name in (
    "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"))


def _redis_key(kind: str, window: int, name: str) -> str:
    return f"{KEY_PREFIX}:{kind}:{window}:{name}"


@functools.lru_cache(maxsize=4096)
def _text(number: int) -> str:
    """A header value: the same few numbers come back on every answer."""
    return str(number)


class Rate(NamedTuple):
    amount: int
    period: int  # seconds

    @classmethod
    def parse(cls, text: str) -> Rate:
        """"30/second" (the notation of the EX_RATE_* settings)."""
        amount, unit = text.split("/")
        return cls(int(amount), _PERIODS[unit])


@dataclass(slots=True)
class _Counter:
    """One key's or address's counts under one rate."""

    rate: Rate
    redis_key: str  # of the current window
    window: int  # the current fixed window: time // period
    previous: int = 0  # every instance's hits in the window before
    local: int = 0  # this process's hits in the current window
    pending: int = 0  # of those, not yet added to Redis
    others: int = 0  # the other instances' hits in the current window, as last synced


class _Limit:
    """One of the limits: its rate, and a counter per key or address counted under it."""

    def __init__(self, kind: str, rate: Rate) -> None:
        self.kind, self.rate = kind, rate
        self.counters: dict[str, _Counter] = {}
        self.unused = Quota(True, rate.amount, rate.amount, 0)  # nothing counted yet


class Limiter:
    """The three limits of `Settings`, counted in memory and shared through Redis."""

    def __init__(self, settings: Settings) -> None:
        self._private = _Limit("key", Rate.parse(settings.rate_private))
        self._public = _Limit("address", Rate.parse(settings.rate_public))
        self._auth_failures = _Limit("auth-failure", Rate.parse(settings.rate_auth_failures))
        self._limits = (self._private, self._public, self._auth_failures)
        self._redis = Redis.from_url(settings.redis_url, socket_timeout=REDIS_TIMEOUT,
                                     socket_connect_timeout=REDIS_TIMEOUT)
        self._late: dict[str, tuple[int, int]] = {}  # Redis key -> (hits, ttl) of past windows
        self._on_local = False
        self._syncing: asyncio.Task[None] | None = None

    @property
    def on_fallback(self) -> bool:
        """Whether the last sync failed: the limits hold in this process only."""
        return self._on_local

    async def close(self) -> None:
        if self._syncing is not None:
            await stop_tasks([self._syncing])
        await self._redis.aclose()

    def hit_key(self, key_id: str) -> Quota:
        return self._count(self._private, key_id, True)

    def hit_address(self, address: str) -> Quota:
        return self._count(self._public, address, True)

    def hit_auth_failure(self, address: str) -> Quota:
        return self._count(self._auth_failures, address, True)

    def auth_failures_left(self, address: str) -> Quota:
        """The failed-authentication quota of `address`, without counting a request."""
        return self._count(self._auth_failures, address, False)

    def _count(self, limit: _Limit, name: str, hit: bool) -> Quota:
        """Count one request (or only look, when not `hit`); a refused one is not counted."""
        counter = limit.counters.get(name)
        if counter is None and not hit:  # nothing counted: nothing used
            return limit.unused
        if self._syncing is None:
            self._syncing = asyncio.get_running_loop().create_task(self._sync_forever(),
                                                                   name="ratelimit")
        rate = limit.rate
        window, into = divmod(time.time(), rate.period)
        if counter is None:
            counter = limit.counters[name] = _Counter(
                rate, _redis_key(limit.kind, int(window), name), int(window))
        elif counter.window != window:
            self._next_window(counter, limit.kind, int(window), name)
        used = (counter.previous * (1 - into / rate.period) + counter.local + counter.others)
        allowed = used < rate.amount
        if hit and allowed:
            counter.local += 1
            counter.pending += 1
            used += 1
        reset = math.ceil(rate.period - into)
        return Quota(allowed, rate.amount, max(0, rate.amount - math.ceil(used)), reset)

    def _next_window(self, counter: _Counter, kind: str, window: int, name: str) -> None:
        """A new window: the current one becomes the previous."""
        if counter.pending:
            self._late[counter.redis_key] = (counter.pending, 2 * counter.rate.period)
        previous = counter.local + counter.others if counter.window == window - 1 else 0
        counter.redis_key = _redis_key(kind, window, name)
        counter.window, counter.previous = window, previous
        counter.local = counter.pending = counter.others = 0

    async def _sync_forever(self) -> None:
        while True:
            await self.sync()
            await asyncio.sleep(SYNC_INTERVAL)

    async def sync(self) -> None:
        """One round trip to Redis: add the new hits of every counter, learn the totals,
        and forget counters whose windows are over."""
        now = time.time()
        for limit in self._limits:
            over = now // limit.rate.period - 1
            for name, counter in list(limit.counters.items()):
                if counter.window < over:
                    del limit.counters[name]
        sending = [(counter, counter.redis_key, counter.pending, counter.local)
                   for limit in self._limits for counter in limit.counters.values()
                   if counter.pending]
        late, self._late = self._late, {}
        if not sending and not late:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for counter, redis_key, pending, _ in sending:
                    pipe.incrby(redis_key, pending)
                    pipe.expire(redis_key, 2 * counter.rate.period)
                for redis_key, (hits, ttl) in late.items():
                    pipe.incrby(redis_key, hits)
                    pipe.expire(redis_key, ttl)
                totals = await pipe.execute()
        except _REDIS_FAILURES as error:
            if not self._on_local:
                log.warning("redis unreachable, rate limits counted in memory",
                            error=type(error).__name__)
            self._on_local = True
            return  # the hits stay pending (late ones are dropped: their windows are over)
        for (counter, redis_key, pending, local), total in zip(sending, totals[::2],
                                                                strict=False):
            if counter.redis_key == redis_key:
                counter.pending -= pending
                counter.others = max(0, int(total) - local)
            else:  # its window ended meanwhile: its pending hits went late, these are sent
                hits, ttl = self._late.pop(redis_key, (0, 0))
                if hits > pending:
                    self._late[redis_key] = (hits - pending, ttl)
        if self._on_local:
            self._on_local = False
            log.info("rate limits counted on redis again")
