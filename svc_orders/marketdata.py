"""Market data out of svc_orders: trades and conflated books on NATS, caches in Redis.

Nothing here may slow matching: the sequencer hands over journaled batches with a
non-blocking call; one task publishes them, and Redis writes go through a bounded
queue that drops (and counts) when Redis is slow or down — it holds caches only.
Payloads are exactly the WebSocket messages (SPEC 4), so svc_stream forwards bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping

import structlog
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from redis.asyncio import Redis

from common import cache, subjects
from common.instruments import Instrument
from common.messages import EventBatch, TradeExecuted
from common.tasks import stop_tasks
from common.views import (
    BookMessage,
    TradesMessage,
    json_encoder,
    levels,
    timestamp,
    trade_view,
)
from svc_orders import metrics
from svc_orders.matching import Exchange

log = structlog.get_logger(__name__)

NATS_BOOK_LEVELS = 50
REDIS_QUEUE = 10_000


class MarketData:
    def __init__(self, nats: Nats, redis: Redis, instruments: Mapping[str, Instrument],
                 engine: Callable[[], Exchange], interval: float, heartbeat: float) -> None:
        self.nats, self.redis, self.instruments = nats, redis, instruments
        self.engine = engine  # the current engine (recovery replaces it)
        self.interval, self.heartbeat = interval, heartbeat
        self.dirty: set[str] = set()
        self.last_book: dict[str, float] = {}
        self.trades: asyncio.Queue[TradesMessage] = asyncio.Queue()
        self.redis_writes: asyncio.Queue[tuple[str, bytes, list[bytes]]] = asyncio.Queue(
            REDIS_QUEUE)

    def journaled(self, batch: EventBatch) -> None:
        """Note a journaled batch: its trades go out now, its book at the next tick."""
        self.dirty.add(batch.symbol)
        instrument = self.instruments[batch.symbol]
        trades = [trade_view(event, instrument)
                  for event in batch.events if type(event) is TradeExecuted]
        if trades:
            self.trades.put_nowait(TradesMessage(type="update", symbol=batch.symbol,
                                                 seq=batch.seq, trades=trades))

    def book_message(self, symbol: str, depth: int, kind: str) -> BookMessage:
        bids, asks = self.engine().depth(symbol, depth)
        instrument = self.instruments[symbol]
        return BookMessage(type="snapshot" if kind == "snapshot" else "update",
                           symbol=symbol, seq=self.engine().seq(symbol),
                           timestamp=timestamp(time.time_ns()),
                           bids=levels(bids, instrument), asks=levels(asks, instrument))

    async def run_trades(self) -> None:
        """Publish each journaled batch's trades as one `md.trades.<SYMBOL>` update."""
        while True:
            message = await self.trades.get()
            self._cache(message.symbol, b"", [json_encoder.encode(t) for t in message.trades])
            await self.nats.publish(subjects.trades(message.symbol),
                                    json_encoder.encode(message))
            metrics.MD_MESSAGES.labels("trades").inc()

    async def run_books(self) -> None:
        """Conflated books: every `interval` while a book changes, every `heartbeat` anyway."""
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            for symbol in self.instruments:
                changed = symbol in self.dirty
                if not changed and now - self.last_book.get(symbol, 0.0) < self.heartbeat:
                    continue
                self.dirty.discard(symbol)
                self.last_book[symbol] = now
                update = self.book_message(symbol, cache.BOOK_LEVELS, "update")
                metrics.BOOK_LEVELS.labels(symbol, "bid").set(len(update.bids))
                metrics.BOOK_LEVELS.labels(symbol, "ask").set(len(update.asks))
                cached = BookMessage(type="snapshot", symbol=symbol, seq=update.seq,
                                     timestamp=update.timestamp, bids=update.bids,
                                     asks=update.asks)
                self._cache(symbol, json_encoder.encode(cached), [])
                update.bids = update.bids[:NATS_BOOK_LEVELS]
                update.asks = update.asks[:NATS_BOOK_LEVELS]
                await self.nats.publish(subjects.book(symbol), json_encoder.encode(update))
                metrics.MD_MESSAGES.labels("book").inc()

    def _cache(self, symbol: str, book: bytes, trades: list[bytes]) -> None:
        try:
            self.redis_writes.put_nowait((symbol, book, trades))
        except asyncio.QueueFull:
            metrics.REDIS_DROPPED.inc()

    async def run_redis(self) -> None:
        """Write caches in pipelines; a Redis outage costs only cache freshness."""
        while True:
            writes = [await self.redis_writes.get()]
            while not self.redis_writes.empty() and len(writes) < 500:
                writes.append(self.redis_writes.get_nowait())
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for symbol, book, trades in writes:
                        if book:
                            pipe.set(cache.book_key(symbol), book)
                        if trades:
                            pipe.lpush(cache.trades_key(symbol), *trades)
                            pipe.ltrim(cache.trades_key(symbol), 0, cache.RECENT_TRADES - 1)
                    await pipe.execute()
            except Exception as error:  # Redis down: drop these cache writes, keep going
                metrics.REDIS_DROPPED.inc(len(writes))
                log.warning("redis cache write failed", error=str(error))
                await asyncio.sleep(1.0)

    async def answer_book_request(self, msg: Msg) -> None:
        """`ex.book.request`: the book of the symbol in the payload, for svc_trades."""
        symbol = msg.data.decode(errors="replace")
        if symbol not in self.instruments:
            await msg.respond(json_encoder.encode({"error": f"unknown symbol {symbol!r}"}))
            return
        book = self.book_message(symbol, cache.BOOK_LEVELS, "snapshot")
        await msg.respond(json_encoder.encode(book))

    async def run(self) -> None:
        """Serve book requests and run the publishers until cancelled."""
        subscription = await self.nats.subscribe(subjects.BOOK_REQUEST,
                                                 cb=self.answer_book_request)
        tasks = [asyncio.create_task(job()) for job in
                 (self.run_trades, self.run_books, self.run_redis)]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # a publisher died: surface its error, never swallow it
        finally:
            await stop_tasks(tasks)
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
