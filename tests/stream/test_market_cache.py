"""Snapshots from the Redis cache: concurrent readers of a symbol share one Redis read."""

import asyncio

import aiohttp
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from common import cache
from common.views import json_encoder
from svc_stream.market_cache import MarketCache
from tests.stream.conftest import MakeStream
from tests.stream.market import book, cache_trades, receive, trade


def reads(channel: str) -> float:
    return REGISTRY.get_sample_value("stream_cache_reads_total", {"channel": channel}) or 0.0


async def test_a_burst_of_snapshots_makes_one_read_per_symbol(redis: Redis,
                                                              symbols: list[str]) -> None:
    symbol = symbols[0]
    await cache_trades(redis, symbol, [trade(symbol, seq, seq) for seq in range(1, 4)])
    await redis.set(cache.book_key(symbol), json_encoder.encode(book(symbol, 3, 2, "snapshot")))
    market_cache = MarketCache(redis)
    before = reads("trades"), reads("orderbook")

    trades, books = await asyncio.gather(
        asyncio.gather(*(market_cache.trades_snapshot(symbol) for _ in range(300))),
        asyncio.gather(*(market_cache.book_snapshot(symbol, 1 + i % 50) for i in range(300))))

    assert (reads("trades"), reads("orderbook")) == (before[0] + 1, before[1] + 1)
    assert {seq for seq, _ in trades} == {3}
    assert len({payload for _, payload in trades}) == 1  # encoded once
    assert {seq for seq, _ in books} == {3}


async def test_a_read_begun_before_a_caller_is_not_shared_with_it(
        redis: Redis, symbols: list[str]) -> None:
    """A subscription registers, then reads: a read already under way may predate an
    update it buffered too late for, so the caller waits for a read of its own."""
    symbol = symbols[0]
    market_cache = MarketCache(redis)
    before = reads("trades")
    early = asyncio.ensure_future(market_cache.trades_snapshot(symbol))
    await asyncio.sleep(0)  # the first read is under way
    await cache_trades(redis, symbol, [trade(symbol, 1, 1)])
    late = await market_cache.trades_snapshot(symbol)
    await early
    assert late[0] == 1
    assert reads("trades") == before + 2


async def test_many_subscribers_at_once_all_get_the_snapshot(
        make_stream: MakeStream, redis: Redis, symbols: list[str]) -> None:
    """More subscribers at once than the Redis pool has connections (100)."""
    stream = await make_stream()
    symbol = symbols[0]
    await cache_trades(redis, symbol, [trade(symbol, seq, seq) for seq in range(1, 6)])
    before = reads("trades")

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        url = stream.make_url(f"/ws/trades/?symbol={symbol}")
        clients = await asyncio.gather(*(session.ws_connect(url) for _ in range(150)))
        snapshots = [await receive(ws) for ws in clients]

    assert {len(snapshot["trades"]) for snapshot in snapshots} == {5}
    assert reads("trades") - before < len(clients)
