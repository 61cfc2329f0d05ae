"""The service's only NATS subscriptions, fanned out in memory to client subscriptions.

One subscription per subject for the whole service (`md.trades.*`, `md.book.*`, and with
auth on `md.orders.*`, every user's order updates), however many clients watch. A message
is parsed and checked once, framed once, and its bytes go to every client as they are;
only a book shown at a smaller depth than published is re-encoded, once per (symbol,
depth) per update. Delivering never awaits a socket (it appends to each client's queue,
written at the end of the loop iteration; see `client`), so fan-out time does not depend
on client speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from common import subjects
from common.messages import OrdersInterest
from common.messages import encoder as msgpack_encoder
from common.views import (
    BookMessage,
    OrdersMessage,
    PublicTradesMessage,
    TradesMessage,
    json_encoder,
)
from svc_stream import metrics
from svc_stream.candles import CandleFeed
from svc_stream.client import text_frame
from svc_stream.feeds import (
    BookSubscription,
    CandleSubscription,
    OrdersSubscription,
    Subscription,
    TradeSubscription,
    cut,
)
from svc_stream.market_cache import MarketCache
from svc_stream.trade_shape import Trade, TradeShape, frame

log = structlog.get_logger(__name__)

INTEREST_EVERY = 0.5  # seconds between announcements of the users watched here
INTEREST_TTL = 4 * INTEREST_EVERY  # how long svc_orders trusts one announcement


_book = msgspec.json.Decoder(BookMessage)
_orders = msgspec.json.Decoder(OrdersMessage)


class BadPayload(ValueError):
    """A market-data message that is not what svc_orders publishes: dropped and counted."""


def trades_update(shape: TradeShape, symbol: str,
                  payload: bytes) -> TradesMessage | PublicTradesMessage:
    """A trades update for `symbol`, checked whole before anyone sees it.

    A subscription forwards only seqs past the last it sent, so one message with a wild
    seq would silence a feed; what svc_orders publishes is an update of one command's
    trades, each with the command's seq and the subject's symbol.
    """
    try:
        message = shape.update(payload)
    except (msgspec.DecodeError, RecursionError) as error:
        raise BadPayload(str(error)) from None
    if message.type != "update" or message.symbol != symbol or not message.trades:
        raise BadPayload("not a trades update of this symbol, or no trades")
    if any(trade.seq != message.seq or trade.symbol != symbol for trade in message.trades):
        raise BadPayload("a trade's seq or symbol differs from the message's")
    return message


def book_message(symbol: str, payload: bytes) -> BookMessage:
    """A book update for `symbol`, checked as `trades_update` checks trades."""
    try:
        book = _book.decode(payload)
    except (msgspec.DecodeError, RecursionError) as error:
        raise BadPayload(str(error)) from None
    if book.symbol != symbol:
        raise BadPayload("the book of another symbol")
    return book


class Relay:
    def __init__(self, nats: Nats, auth: bool = False) -> None:
        """`auth`: trades are public (checked to carry no ids), and users' order updates
        are relayed to their `orders` subscriptions."""
        self.nats, self.auth = nats, auth
        self.shape = TradeShape(public=auth)
        self.trades: dict[str, set[TradeSubscription]] = {}
        self.books: dict[str, dict[int, set[BookSubscription]]] = {}  # symbol, depth
        self.orders: dict[str, set[OrdersSubscription]] = {}  # by the user's subject
        self.candles: dict[str, CandleFeed] = {}
        self.instance = str(uuid.uuid4())  # names this service's announcements
        self._subscriptions: list[NatsSubscription] = []

    @property
    def ready(self) -> bool:
        return bool(self._subscriptions) and self.nats.is_connected

    async def start(self) -> None:
        """Subscribe, and return once the server has the subscriptions."""
        self._subscriptions = [
            await self.nats.subscribe(subjects.trades("*"), cb=self._on_trades),
            await self.nats.subscribe(subjects.book("*"), cb=self._on_book),
        ]
        if self.auth:
            self._subscriptions.append(await self.nats.subscribe(
                subjects.USER_ORDERS_WILDCARD, cb=self._on_orders))
        await self.nats.flush()

    async def stop(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            with contextlib.suppress(Exception):  # the connection may be closing already
                await subscription.unsubscribe()

    def add(self, sub: Subscription) -> None:
        if isinstance(sub, TradeSubscription):
            self.trades.setdefault(sub.symbol, set()).add(sub)
        elif isinstance(sub, BookSubscription):
            self.books.setdefault(sub.symbol, {}).setdefault(sub.depth, set()).add(sub)
        elif isinstance(sub, OrdersSubscription):
            self.orders.setdefault(sub.subject, set()).add(sub)
        elif isinstance(sub, CandleSubscription):
            self.candles.setdefault(sub.symbol, CandleFeed(sub.symbol)).subs.add(sub)
        metrics.SUBSCRIPTIONS.labels(sub.channel).inc()

    def remove(self, sub: Subscription) -> None:
        sub.cancel()
        if isinstance(sub, TradeSubscription):
            subs = self.trades.get(sub.symbol, set())
            subs.discard(sub)
            if not subs:
                self.trades.pop(sub.symbol, None)
        elif isinstance(sub, BookSubscription):
            depths = self.books.get(sub.symbol, {})
            group = depths.get(sub.depth, set())
            group.discard(sub)
            if not group:
                depths.pop(sub.depth, None)
            if not depths:
                self.books.pop(sub.symbol, None)
        elif isinstance(sub, OrdersSubscription):
            users = self.orders.get(sub.subject, set())
            users.discard(sub)
            if not users:
                self.orders.pop(sub.subject, None)
        elif isinstance(sub, CandleSubscription):
            feed = self.candles.get(sub.symbol)
            if feed is not None:
                feed.subs.discard(sub)
                if not feed.subs:
                    del self.candles[sub.symbol]
        metrics.SUBSCRIPTIONS.labels(sub.channel).dec()

    async def _on_trades(self, msg: Msg) -> None:
        metrics.MESSAGES_IN.labels("trades").inc()
        symbol = subjects.symbol_of(msg.subject)
        subs, candles = self.trades.get(symbol), self.candles.get(symbol)
        if not subs and candles is None:
            return
        try:
            message = trades_update(self.shape, symbol, msg.data)
        except BadPayload as error:
            self._bad("trades", msg, error)
            return
        if subs:
            frame = text_frame(msg.data)
            for sub in subs:
                sub.deliver(message.seq, frame)
        if candles is not None:
            candles.trades(message.seq, message.trades)

    async def _on_book(self, msg: Msg) -> None:
        metrics.MESSAGES_IN.labels("orderbook").inc()
        symbol = subjects.symbol_of(msg.subject)
        depths = self.books.get(symbol)
        if not depths:
            return
        try:
            book = book_message(symbol, msg.data)
        except BadPayload as error:
            self._bad("orderbook", msg, error)
            return
        for depth, subs in depths.items():
            payload = msg.data
            if len(book.bids) > depth or len(book.asks) > depth:
                payload = json_encoder.encode(cut(book, depth))
            frame = text_frame(payload)
            for sub in subs:
                sub.deliver(book.seq, frame)

    async def announce(self) -> None:
        """Tell svc_orders which users have `orders` subscribers here; returns once NATS
        has it, so a client's `subscribed` answer follows it."""
        users = sorted({sub.user_id for subs in self.orders.values() for sub in subs})
        try:
            await self.nats.publish(subjects.ORDERS_INTEREST, msgpack_encoder.encode(
                OrdersInterest(instance=self.instance, user_ids=users, ttl=INTEREST_TTL)))
            await self.nats.flush(timeout=1)
        except nats.errors.Error as error:  # NATS is away: the next announcement tells
            log.warning("interest not announced", error=type(error).__name__)

    async def announce_interest(self) -> None:
        """Announce again, before the last announcement expires, until cancelled."""
        while True:
            await asyncio.sleep(INTEREST_EVERY)
            await self.announce()

    async def _on_orders(self, msg: Msg) -> None:
        metrics.MESSAGES_IN.labels("orders").inc()
        subs = self.orders.get(msg.subject)
        if not subs:
            return
        try:
            message = _orders.decode(msg.data)
        except (msgspec.DecodeError, RecursionError) as error:
            self._bad("orders", msg, BadPayload(str(error)))
            return
        frame = text_frame(msg.data)
        for sub in subs:
            if sub.symbol == message.symbol:
                sub.deliver(message.seq, frame)

    async def catch_up(self, market_cache: MarketCache) -> None:
        """After a NATS reconnect: the trades published meanwhile never reached us, but
        svc_orders cached them in Redis before publishing. Every live trade subscription
        buffers again, gets the cached trades past its seq as one update, then its buffer.
        A gap longer than the cache stays visible to the client in `trade_no`."""
        paused: dict[str, list[TradeSubscription]] = {}
        for symbol, subs in self.trades.items():
            live = [sub for sub in subs if sub.pause()]
            if live:
                paused[symbol] = live
        recent = await asyncio.gather(*(market_cache.recent_trades(symbol) for symbol in paused))
        for (symbol, waiting), trades in zip(paused.items(), recent, strict=True):
            updates: dict[int, tuple[int, bytes | None]] = {}  # by the seq a client has
            for sub in waiting:
                if sub.seq not in updates:
                    updates[sub.seq] = _missed(symbol, trades, sub.seq)
                sub.start(*updates[sub.seq])
        metrics.CATCH_UPS.inc()
        log.info("caught up after a NATS reconnect",
                 subscriptions=sum(len(waiting) for waiting in paused.values()))

    @staticmethod
    def _bad(channel: str, msg: Msg, error: BadPayload) -> None:
        metrics.BAD_PAYLOADS.labels(channel).inc()
        log.warning("unexpected market-data payload", subject=msg.subject, error=str(error))


def _missed(symbol: str, trades: list[Trade], seq: int) -> tuple[int, bytes | None]:
    """The trades past `seq` as one update frame (None if there are none), and its seq."""
    missed = [trade for trade in trades if trade.seq > seq]
    if not missed:
        return seq, None
    update = frame("update", symbol, missed[-1].seq, missed)
    return update.seq, text_frame(json_encoder.encode(update))
