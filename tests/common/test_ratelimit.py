"""The rate limiter: counted in memory, shared by instances through Redis at each sync,
and in memory alone while Redis is down."""

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
    allowed: dict[str, str] = {}
    Quota(True, 10, 3, 7).add_headers(allowed)
    assert allowed == {
        "RateLimit-Limit": "10", "RateLimit-Remaining": "3", "RateLimit-Reset": "7"}
    refused: dict[str, str] = {}
    Quota(False, 10, 0, 0).add_headers(refused)
    assert refused["Retry-After"] == "1"


async def test_one_instance_counts_exactly(limiters: tuple[Limiter, Limiter]) -> None:
    limiter, _ = limiters
    assert [limiter.hit_key("k").remaining for _ in range(3)] == [2, 1, 0]
    refused = limiter.hit_key("k")
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert 1 <= refused.reset <= 60
    assert limiter.auth_failures_left("k").remaining == 10  # another limit
    assert limiter.hit_key("other").allowed


async def test_instances_share_their_counts_in_redis(limiters: tuple[Limiter, Limiter]) -> None:
    first, second = limiters
    assert first.hit_key("k").remaining == 2
    assert first.hit_key("k").remaining == 1
    await first.sync()
    assert second.hit_key("k").remaining == 2  # it has not synced yet
    await second.sync()  # learns first's two hits
    refused = second.hit_key("k")
    assert (refused.allowed, refused.remaining) == (False, 0)
    await first.sync()  # learns second's hit
    assert not first.hit_key("k").allowed
    assert not first.on_fallback


async def test_while_redis_is_down_limits_are_counted_in_memory_then_in_redis_again(
        redis: RedisServer, limiters: tuple[Limiter, Limiter]) -> None:
    limiter, other = limiters
    limiter.hit_key("k")
    redis.stop()
    with structlog.testing.capture_logs() as logs:
        allowed = [limiter.hit_key("k").allowed for _ in range(3)]
        assert allowed == [True, True, False]  # counted on, in memory
        await eventually(lambda: limiter.on_fallback)  # the background sync found it down
        redis.start()
        await eventually(lambda: not limiter.on_fallback, timeout=5.0, interval=0.1)
    assert [entry["event"] for entry in logs] == [
        "redis unreachable, rate limits counted in memory", "rate limits counted on redis again"]
    other.hit_key("k")
    await other.sync()  # the hits counted while Redis was down reached it afterwards
    assert not other.hit_key("k").allowed
