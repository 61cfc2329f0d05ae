"""Reads of the market-data cache that svc_orders keeps in Redis (see `common.cache`).

They make the WebSocket `snapshot` messages and the catch-up after a NATS reconnect.
Concurrent readers of one key share one Redis read (`Coalescer`), so a burst of
subscribers to a symbol costs one read, not one Redis connection each.

Redis holds caches only: if it is down or holds garbage, a snapshot goes out empty (with
seq 0, so every live update after it is forwarded) and a warning is logged; live updates
never touch Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from common import cache
from common.views import BookMessage, json_encoder, timestamp
from svc_stream import metrics
from svc_stream.feeds import cut
from svc_stream.trade_shape import Trade, TradeShape, frame

log = structlog.get_logger(__name__)

T = TypeVar("T")

_book = msgspec.json.Decoder(BookMessage)


class Coalescer(Generic[T]):
    """One read per key at a time; callers that come while it runs share the next one.

    A caller never shares a read that began before it called: a subscription registers
    with the relay and *then* reads, so a read begun earlier could miss an update that
    reached neither it nor the subscription's buffer (see `feeds`).
    """

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Task[T]] = {}  # not started: may still be joined
        self._running: dict[str, asyncio.Task[T]] = {}

    async def read(self, key: str, read: Callable[[], Awaitable[T]]) -> T:
        task = self._waiting.get(key)
        if task is None:
            task = asyncio.ensure_future(self._next(key, read))
            self._waiting[key] = task
        return await asyncio.shield(task)  # one caller leaving does not cancel the rest

    async def _next(self, key: str, read: Callable[[], Awaitable[T]]) -> T:
        running = self._running.get(key)
        if running is not None:
            await asyncio.wait([running])
        task = self._waiting.pop(key)
        self._running[key] = task
        try:
            return await read()
        finally:
            if self._running.get(key) is task:
                del self._running[key]


class MarketCache:
    def __init__(self, redis: Redis, public: bool = False) -> None:
        """`public` (auth on): cached trades must carry no user or order ids."""
        self.redis = redis
        self._shape = TradeShape(public)
        self._trades: Coalescer[list[Trade]] = Coalescer()
        self._snapshots: Coalescer[tuple[int, bytes]] = Coalescer()  # trades, encoded once
        self._books: Coalescer[BookMessage | None] = Coalescer()

    async def trades_snapshot(self, symbol: str) -> tuple[int, bytes]:
        """The recent trades, oldest first like the updates after them, and their max seq."""
        return await self._snapshots.read(symbol, lambda: self._encode_trades(symbol))

    async def recent_trades(self, symbol: str) -> list[Trade]:
        """The cached trades, oldest first; none if Redis fails."""
        return await self._trades.read(symbol, lambda: self._read_trades(symbol))

    async def newest_trade_seq(self, symbol: str) -> int:
        """The seq of the newest cached trade (0: none, or Redis failed)."""
        metrics.CACHE_READS.labels("trades").inc()
        try:
            newest = await self.redis.lindex(cache.trades_key(symbol), 0)
            return 0 if newest is None else self._shape.trade(newest).seq
        except (RedisError, OSError, msgspec.DecodeError) as error:
            self._failed("trades", symbol, error)
            return 0

    async def book_snapshot(self, symbol: str, depth: int) -> tuple[int, bytes]:
        """The cached book cut to `depth`; an empty one (seq 0) if there is none yet."""
        book = await self._books.read(symbol, lambda: self._read_book(symbol))
        if book is None:
            book = BookMessage(type="snapshot", symbol=symbol, seq=0,
                               timestamp=timestamp(time.time_ns()), bids=[], asks=[])
        return book.seq, json_encoder.encode(cut(book, depth))

    async def _encode_trades(self, symbol: str) -> tuple[int, bytes]:
        trades = await self._read_trades(symbol)
        seq = max((trade.seq for trade in trades), default=0)
        return seq, json_encoder.encode(frame("snapshot", symbol, seq, trades))

    async def _read_trades(self, symbol: str) -> list[Trade]:
        metrics.CACHE_READS.labels("trades").inc()
        try:
            cached = await self.redis.lrange(cache.trades_key(symbol), 0,
                                             cache.RECENT_TRADES - 1)
            return [self._shape.trade(item) for item in reversed(cached)]
        except (RedisError, OSError, msgspec.DecodeError) as error:
            self._failed("trades", symbol, error)
            return []

    async def _read_book(self, symbol: str) -> BookMessage | None:
        metrics.CACHE_READS.labels("orderbook").inc()
        try:
            cached = await self.redis.get(cache.book_key(symbol))
            if cached is None:
                return None
            book = _book.decode(cached)
        except (RedisError, OSError, msgspec.DecodeError) as error:
            self._failed("orderbook", symbol, error)
            return None
        book.type = "snapshot"
        return book

    @staticmethod
    def _failed(channel: str, symbol: str, error: Exception) -> None:
        metrics.SNAPSHOT_FAILURES.labels(channel).inc()
        log.warning("cached market data unavailable, sending it empty", channel=channel,
                    symbol=symbol, error=repr(error))
