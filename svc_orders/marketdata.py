"""Market data out of svc_orders: trades and conflated books on NATS, caches in Redis.

Every update is written to Redis *before* it is published on NATS, so a WebSocket client
that subscribes and then reads the cache finds each update in the cache, in its buffer,
or in both (svc_stream drops the duplicates by seq). Nothing here may slow matching: the
sequencer hands over journaled batches, with their trade views, by a non-blocking call,
and one task per feed does the I/O. Redis holds caches only: when a write fails, Redis
is skipped for a moment and updates go straight to NATS.

With auth on, market data is public: `md.trades` and the trades cache carry trades without
user or order ids, and each user's own order updates and fills go to that user's
`md.orders.<user>` subject instead (see `user_messages`), for the users a svc_stream
instance has subscribers for (`interest`). With auth off nothing of that is built: the
matcher's side costs one test per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Container, Mapping
from functools import partial

import msgspec
import structlog
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from common import cache, subjects
from common.instruments import Instrument
from common.messages import EventBatch
from common.orderstate import OrderState, order_ids
from common.tasks import stop_tasks
from common.views import (
    BookMessage,
    OrdersMessage,
    PublicTradesMessage,
    TradesMessage,
    TradeView,
    fills_of,
    json_encoder,
    levels,
    order_view,
    public_trade,
    timestamp,
)
from svc_orders import metrics
from svc_orders.interest import Interest
from svc_orders.matching import Exchange
from svc_orders.sequencer import Unavailable

log = structlog.get_logger(__name__)

NATS_BOOK_LEVELS = 50
BURST = 500  # trade updates cached in one Redis round trip
RESENT = 1_000  # trade updates sent again after a NATS reconnect (see `reconnected`)
COALESCE = 0.002  # seconds a trade update waits for others to share its Redis round trip
REDIS_BACKOFF = 1.0  # seconds without Redis after a failed write

FindOrder = Callable[[str], OrderState | None]  # an order as svc_orders holds it now


class MarketData:
    def __init__(self, nats: Nats, redis: Redis, instruments: Mapping[str, Instrument],
                 engine: Callable[[], Exchange], acknowledged: Callable[[], Awaitable[None]],
                 interval: float, heartbeat: float, find_order: FindOrder | None = None) -> None:
        """`find_order` (auth on only): the orders a batch changed, for the per-user
        subjects; it also makes the trades public."""
        self.nats, self.redis, self.instruments = nats, redis, instruments
        self.find_order = find_order
        self.engine = engine  # the current engine (recovery replaces it)
        # Books are read from the engine, which runs ahead of the journal by the appends
        # in flight: a book goes out only once those are acknowledged.
        self.acknowledged = acknowledged
        self.interval, self.heartbeat = interval, heartbeat
        self.dirty: set[str] = set()
        self.last_book: dict[str, float] = {}
        self.trades: asyncio.Queue[TradesMessage] = asyncio.Queue()
        self.batches: asyncio.Queue[tuple[EventBatch, list[TradeView]]] = asyncio.Queue()
        self.interest = Interest()
        self._redis_down_until = 0.0
        # The last trade updates sent, and whether the connection to NATS is up: a
        # NATS server that dies takes the messages in flight through it with it.
        self._sent: deque[tuple[str, bytes]] = deque(maxlen=RESENT)
        self._connected = asyncio.Event()
        self._connected.set()

    def disconnected(self) -> None:
        """NATS is gone: hold the trade updates until it is back."""
        self._connected.clear()

    async def reconnected(self) -> None:
        """Send the last trade updates again, then the ones held meanwhile, in order.

        Those sent just before the connection broke may have died with the server they
        went through; svc_stream forwards only a seq past the last it forwarded, so a
        client that did get them sees nothing twice.
        """
        for subject, payload in list(self._sent):
            await self.nats.publish(subject, payload)
        self._connected.set()

    def journaled(self, batch: EventBatch, trades: list[TradeView]) -> None:
        """Note a journaled batch and its trades: they go out now, its book at the next
        tick."""
        self.dirty.add(batch.symbol)
        if trades:
            self.trades.put_nowait(TradesMessage(type="update", symbol=batch.symbol,
                                                 seq=batch.seq, trades=trades))
        if self.find_order is not None and self.interest.users():
            # Only while some connection watches someone: with nobody watching, a batch
            # costs no queueing and no wake-up of `run_orders`.
            self.batches.put_nowait((batch, trades))

    def book_message(self, symbol: str, depth: int) -> BookMessage:
        """The book as it stands: the whole message for the cache and book requests (type
        "snapshot"), cut to an update for NATS."""
        bids, asks = self.engine().depth(symbol, depth)
        instrument = self.instruments[symbol]
        return BookMessage(type="snapshot", symbol=symbol, seq=self.engine().seq(symbol),
                           timestamp=timestamp(time.time_ns()),
                           bids=levels(bids, instrument), asks=levels(asks, instrument))

    async def run_trades(self) -> None:
        """Each journaled batch's trades: into the Redis list, then one `md.trades` update."""
        while True:
            messages = [await self.trades.get()]
            await asyncio.sleep(COALESCE)  # let a burst gather: one Redis round trip for all
            while not self.trades.empty() and len(messages) < BURST:
                messages.append(self.trades.get_nowait())
            published: list[TradesMessage] | list[PublicTradesMessage] = messages
            if self.find_order is not None:
                published = [
                    PublicTradesMessage(type=message.type, symbol=message.symbol,
                                        seq=message.seq,
                                        trades=[public_trade(trade) for trade in message.trades])
                    for message in messages]
            await self._cache(partial(_cache_trades, messages=published))
            await self._connected.wait()
            for message in published:
                subject, payload = subjects.trades(message.symbol), json_encoder.encode(message)
                self._sent.append((subject, payload))
                await self.nats.publish(subject, payload)
            metrics.MD_MESSAGES.labels("trades").inc(len(messages))

    async def run_orders(self, find: FindOrder) -> None:
        """Each journaled batch, once per user whose orders it changed: one message on
        that user's subject, in journal order."""
        while True:
            batch, trades = await self.batches.get()
            watched = self.interest.users()
            if not watched:
                continue
            messages = user_messages(batch, trades, find, self.instruments[batch.symbol],
                                     watched)
            for user_id, message in messages.items():
                await self.nats.publish(subjects.user_orders(user_id),
                                        json_encoder.encode(message))
            metrics.MD_MESSAGES.labels("orders").inc(len(messages))

    async def run_books(self) -> None:
        """Conflated books: every `interval` while a book changes, every `heartbeat` anyway."""
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            due = [symbol for symbol in self.instruments if symbol in self.dirty
                   or now - self.last_book.get(symbol, 0.0) >= self.heartbeat]
            self.dirty.difference_update(due)  # a change while we wait marks it again
            books = [self.book_message(symbol, cache.BOOK_LEVELS) for symbol in due]
            try:
                await self.acknowledged()
            except Unavailable:
                self.dirty.update(due)  # the rebuilt engine's books go out next time
                continue
            for book in books:
                self.last_book[book.symbol] = now
                metrics.BOOK_LEVELS.labels(book.symbol, "bid").set(len(book.bids))
                metrics.BOOK_LEVELS.labels(book.symbol, "ask").set(len(book.asks))
            if books:
                await self._cache(partial(_cache_books, books=books))
            for book in books:
                update = msgspec.structs.replace(
                    book, type="update", bids=book.bids[:NATS_BOOK_LEVELS],
                    asks=book.asks[:NATS_BOOK_LEVELS])
                await self.nats.publish(subjects.book(book.symbol), json_encoder.encode(update))
            metrics.MD_MESSAGES.labels("book").inc(len(books))

    async def _cache(self, write: Callable[[Pipeline], None]) -> None:
        """Run `write` in one Redis pipeline, unless Redis failed a moment ago."""
        if time.monotonic() < self._redis_down_until:
            metrics.REDIS_SKIPPED.inc()
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                write(pipe)
                await pipe.execute()
        except Exception as error:  # a cache: note it, carry on without Redis for a moment
            self._redis_down_until = time.monotonic() + REDIS_BACKOFF
            metrics.REDIS_SKIPPED.inc()
            log.warning("redis cache write failed", error=repr(error))

    async def answer_book_request(self, msg: Msg) -> None:
        """`ex.book.request`: the book of the symbol in the payload, for svc_trades."""
        symbol = msg.data.decode(errors="replace")
        if symbol not in self.instruments:
            await msg.respond(json_encoder.encode({"error": f"unknown symbol {symbol!r}"}))
            return
        book = self.book_message(symbol, cache.BOOK_LEVELS)
        try:
            await self.acknowledged()
        except Unavailable:
            await msg.respond(json_encoder.encode({"error": "the journal is unavailable"}))
            return
        await msg.respond(json_encoder.encode(book))

    async def run(self) -> None:
        """Serve book requests and run the publishers until cancelled."""
        subscriptions = [await self.nats.subscribe(subjects.BOOK_REQUEST,
                                                   cb=self.answer_book_request)]
        if self.find_order is not None:
            subscriptions.append(await self.nats.subscribe(subjects.ORDERS_INTEREST,
                                                           cb=self.interest.on_message))
        jobs = [self.run_trades(), self.run_books()]
        if self.find_order is not None:
            jobs.append(self.run_orders(self.find_order))
        tasks = [asyncio.create_task(job) for job in jobs]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # a publisher died: surface its error, never swallow it
        finally:
            await stop_tasks(tasks)
            for subscription in subscriptions:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()


def user_messages(batch: EventBatch, trades: list[TradeView], find: FindOrder,
                  instrument: Instrument, watched: Container[str]) -> dict[str, OrdersMessage]:
    """By `watched` user: the orders `batch` changed, as they stand after it, and the
    user's fills.

    The batch is journaled, but the orders may have moved on since (the matcher runs ahead
    of the journal): an order changed by a later command is left to that command's
    message, so every view sent is a state the journal holds. Orders without a user are
    nobody's to see.
    """
    messages: dict[str, OrdersMessage] = {}

    def message(user_id: str) -> OrdersMessage:
        found = messages.get(user_id)
        if found is None:
            found = messages[user_id] = OrdersMessage(symbol=batch.symbol, seq=batch.seq,
                                                      orders=[], fills=[])
        return found

    seen: set[str] = set()
    for event in batch.events:
        for order_id in order_ids(event):
            state = None if order_id in seen else find(order_id)
            seen.add(order_id)
            if (state is not None and state.seq == batch.seq
                    and state.user_id is not None and state.user_id in watched):
                message(state.user_id).orders.append(order_view(state, instrument))
    for trade in trades:
        for user_id in {trade.buyer_user_id, trade.seller_user_id}:
            if user_id is not None and user_id in watched:
                message(user_id).fills.extend(fills_of(trade, user_id))
    return messages


def _cache_trades(pipe: Pipeline,
                  messages: list[TradesMessage] | list[PublicTradesMessage]) -> None:
    """Two commands per symbol for a whole burst: one LPUSH in execution order (so the
    newest trade ends up first) and one LTRIM."""
    by_symbol: dict[str, list[bytes]] = {}
    for message in messages:
        encoded = by_symbol.setdefault(message.symbol, [])
        encoded.extend(json_encoder.encode(trade) for trade in message.trades)
    for symbol, encoded in by_symbol.items():
        key = cache.trades_key(symbol)
        pipe.lpush(key, *encoded[-cache.RECENT_TRADES:])
        pipe.ltrim(key, 0, cache.RECENT_TRADES - 1)


def _cache_books(pipe: Pipeline, books: list[BookMessage]) -> None:
    for book in books:
        pipe.set(cache.book_key(book.symbol), json_encoder.encode(book))
