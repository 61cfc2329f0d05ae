"""Snapshots from the Redis caches that svc_orders keeps (see `common.cache`).

Redis holds caches only: if it is down or holds garbage, a snapshot goes out empty (with
seq 0, so every live update after it is forwarded) and a warning is logged; live updates
never touch Redis.
"""

from __future__ import annotations

import time

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from common import cache
from common.views import BookMessage, TradesMessage, TradeView, json_encoder, timestamp
from svc_stream import metrics
from svc_stream.feeds import cut

log = structlog.get_logger(__name__)

_trade = msgspec.json.Decoder(TradeView)
_book = msgspec.json.Decoder(BookMessage)


class Snapshots:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def trades(self, symbol: str) -> tuple[int, bytes]:
        """The recent trades, oldest first like the updates after them, and their max seq."""
        trades = await self.recent_trades(symbol)
        seq = max((trade.seq for trade in trades), default=0)
        message = TradesMessage(type="snapshot", symbol=symbol, seq=seq, trades=trades)
        return seq, json_encoder.encode(message)

    async def recent_trades(self, symbol: str) -> list[TradeView]:
        """The cached trades, oldest first; none if Redis fails."""
        try:
            cached = await self.redis.lrange(cache.trades_key(symbol), 0,
                                             cache.RECENT_TRADES - 1)
            return [_trade.decode(item) for item in reversed(cached)]
        except (RedisError, OSError, msgspec.DecodeError) as error:
            self._failed("trades", symbol, error)
            return []

    async def book(self, symbol: str, depth: int) -> tuple[int, bytes]:
        """The cached book cut to `depth`; an empty one (seq 0) if there is none yet."""
        book = None
        try:
            cached = await self.redis.get(cache.book_key(symbol))
            if cached is not None:
                book = _book.decode(cached)
        except (RedisError, OSError, msgspec.DecodeError) as error:
            self._failed("orderbook", symbol, error)
        if book is None:
            book = BookMessage(type="snapshot", symbol=symbol, seq=0,
                               timestamp=timestamp(time.time_ns()), bids=[], asks=[])
        book.type = "snapshot"
        return book.seq, json_encoder.encode(cut(book, depth))

    @staticmethod
    def _failed(channel: str, symbol: str, error: Exception) -> None:
        metrics.SNAPSHOT_FAILURES.labels(channel).inc()
        log.warning("snapshot unavailable, sending it empty", channel=channel, symbol=symbol,
                    error=repr(error))
