"""The rate limiter: counted in Redis, shared by instances, in memory while Redis is down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog

from common.config import Settings
from common.ratelimit import Limiter, Quota
from ops.stack import RedisServer
from tests.helpers import eventually


@pytest.fixture
def redis(tmp_path: Path) -> RedisServer:
    """A Redis of this test's own, which it may stop and start again."""
    return RedisServer(tmp_path / "redis")


@pytest.fixture
async def limiters(redis: RedisServer) -> AsyncIterator[tuple[Limiter, Limiter]]:
    settings = Settings(redis_url=redis.url, rate_private="3/minute")
    pair = Limiter(settings), Limiter(settings)  # two instances of a service
    with redis.start():
        yield pair
        for limiter in pair:
            await limiter.close()


def test_quota_headers() -> None:
    assert Quota(True, 10, 3, 7).headers() == {
        "RateLimit-Limit": "10", "RateLimit-Remaining": "3", "RateLimit-Reset": "7"}
    assert Quota(False, 10, 0, 0).headers()["Retry-After"] == "1"


async def test_instances_share_their_counts_in_redis(limiters: tuple[Limiter, Limiter]) -> None:
    first, second = limiters
    assert (await first.hit_key("k")).remaining == 2
    assert (await second.hit_key("k")).remaining == 1
    assert (await first.hit_key("k")).allowed
    refused = await second.hit_key("k")
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert 1 <= refused.reset <= 60
    assert (await first.hit_key("other")).allowed
    assert not first.on_fallback


async def test_while_redis_is_down_limits_are_counted_in_memory_then_in_redis_again(
        redis: RedisServer, limiters: tuple[Limiter, Limiter]) -> None:
    limiter, _ = limiters
    await limiter.hit_key("k")
    redis.stop()
    with structlog.testing.capture_logs() as logs:
        allowed = [(await limiter.hit_key("k")).allowed for _ in range(4)]
        assert allowed == [True, True, True, False]  # a fresh count: Redis' is out of reach
        assert limiter.on_fallback
        redis.start()

        async def back_on_redis() -> bool:
            await limiter.hit_key("k2")
            return not limiter.on_fallback

        await eventually(back_on_redis, timeout=5.0, interval=0.1)
    assert [entry["event"] for entry in logs] == [
        "redis unreachable, rate limits counted in memory", "rate limits counted on redis again"]
