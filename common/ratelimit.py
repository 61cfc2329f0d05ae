"""Rate limits per key, per client address, and on failed authentications.

Counters live in Redis through the `limits` library (sliding window counters, redis-py's
asyncio client), so the instances of a service share them. `limits` has no fallback of
its own (Flask-Limiter's `in_memory_fallback` lives in that framework), so `Limiter` does
the switch: when Redis fails or times out, it counts in this process's memory and tries
Redis again a second later. Losing Redis loses counts, never requests.
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

import limits
import redis.exceptions
import structlog
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import RateLimiter, SlidingWindowCounterRateLimiter
from redis.asyncio import ConnectionPool

from common.config import Settings

log = structlog.get_logger(__name__)

REDIS_TIMEOUT = 0.25  # seconds: a hung Redis costs a request this much, then the fallback
RETRY_REDIS = 1.0  # seconds on the fallback before Redis is tried again
_REDIS_FAILURES = (redis.exceptions.RedisError, OSError, TimeoutError)


class Quota(NamedTuple):
    """One limit's state after a request: what the RateLimit-* headers say."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # whole seconds until a request is allowed again / the window frees up

    def headers(self) -> dict[str, str]:
        headers = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining":
                   str(self.remaining), "RateLimit-Reset": str(self.reset)}
        if not self.allowed:
            headers["Retry-After"] = str(max(1, self.reset))
        return headers


class Limiter:
    """The three limits of `Settings`, counted in Redis or, while it is down, in memory."""

    def __init__(self, settings: Settings) -> None:
        self.private = limits.parse(settings.rate_private)
        self.public = limits.parse(settings.rate_public)
        self.auth_failures = limits.parse(settings.rate_auth_failures)
        self._pool = ConnectionPool.from_url(settings.redis_url, socket_timeout=REDIS_TIMEOUT,
                                             socket_connect_timeout=REDIS_TIMEOUT)
        # limits documents `connection_pool` but types its options as scalars.
        pool: Any = self._pool
        storage = RedisStorage("async+" + settings.redis_url, implementation="redispy",
                               key_prefix="ex-rate", connection_pool=pool)
        self._shared: RateLimiter = SlidingWindowCounterRateLimiter(storage)
        self._local: RateLimiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._on_local = False
        self._retry_redis_at = 0.0  # monotonic

    @property
    def on_fallback(self) -> bool:
        return self._on_local

    async def close(self) -> None:
        await self._pool.aclose()

    async def hit_key(self, key_id: str) -> Quota:
        return await self._count(self.private, True, "key", key_id)

    async def hit_address(self, address: str) -> Quota:
        return await self._count(self.public, True, "address", address)

    async def hit_auth_failure(self, address: str) -> Quota:
        return await self._count(self.auth_failures, True, "auth-failure", address)

    async def auth_failures_left(self, address: str) -> Quota:
        """The failed-authentication quota of `address`, without counting a request."""
        return await self._count(self.auth_failures, False, "auth-failure", address)

    async def _count(self, item: limits.RateLimitItem, hit: bool, *bucket: str) -> Quota:
        """Count one request (or only look, when not `hit`) on Redis, or in memory while
        Redis is down."""
        if self._on_local and time.monotonic() < self._retry_redis_at:
            return await _quota(self._local, item, hit, bucket)
        try:
            quota = await _quota(self._shared, item, hit, bucket)
        except _REDIS_FAILURES as error:
            if not self._on_local:
                log.warning("redis unreachable, rate limits counted in memory",
                            error=type(error).__name__)
            self._on_local = True
            self._retry_redis_at = time.monotonic() + RETRY_REDIS
            return await _quota(self._local, item, hit, bucket)
        if self._on_local:
            self._on_local = False
            log.info("rate limits counted on redis again")
        return quota


async def _quota(limiter: RateLimiter, item: limits.RateLimitItem, hit: bool,
                 bucket: tuple[str, ...]) -> Quota:
    """Two round trips to count (the hit, then the window for the headers), one to look:
    a request is allowed while one remains, which is what `test` would answer."""
    allowed = await limiter.hit(item, *bucket) if hit else None
    stats = await limiter.get_window_stats(item, *bucket)
    reset = max(0, math.ceil(stats.reset_time - time.time()))
    return Quota(stats.remaining > 0 if allowed is None else allowed, item.amount,
                 stats.remaining, reset)
