"""svc_trades' REST API: trades, settlement, the order listing and the order book.

Trades are read from the projection (`repository`), orders from the read model
(`readmodel`, which answers svc_orders' `GET /orders/` as well). The order book is
svc_orders' Redis snapshot or, when Redis has none, svc_orders' answer over NATS: never
a scan of the orders table.

With auth on, a key sees only its own user's trades and orders (an admin sees all):
another user's trade answers 404 as if it did not exist, and settling is for admins.
`GET /trades/public/` and the order book are public: public trades carry no user or
order ids.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime

import asyncpg
import msgspec
import nats.errors
import structlog
from aiohttp import web
from nats.aio.client import Client as Nats
from redis.asyncio import Redis
from redis.exceptions import RedisError

from common import cache, subjects
from common.access import identity, is_admin, owner_filter, requires
from common.http import (
    ApiError,
    invalid,
    json_body_response,
    json_response,
    query_int,
    query_text,
    query_uuid,
    uuid_path,
)
from common.instruments import DEFAULT_SYMBOL, Instrument
from common.listing import Pagination, order_filters, page_request
from common.messages import TradeSettled, encoder
from common.views import BookMessage, Level, TradeView
from svc_trades import candles, metrics, repository
from svc_trades.readmodel import OrderReadModel
from svc_trades.repository import TradeFilters
from svc_trades.rows import moment

log = structlog.get_logger(__name__)

POOL = web.AppKey("pool", asyncpg.Pool)
READ_MODEL = web.AppKey("read_model", OrderReadModel)
NATS = web.AppKey("nats", Nats)
REDIS = web.AppKey("redis", Redis)
INSTRUMENTS: web.AppKey[Mapping[str, Instrument]] = web.AppKey("instruments")

DEFAULT_DEPTH = 5
MAX_DEPTH = 100
BOOK_TIMEOUT = 1.0  # seconds svc_orders gets to answer a book request

_book_decoder = msgspec.json.Decoder(BookMessage)


class Settled(msgspec.Struct, kw_only=True):
    message: str
    trade: TradeView


class OrderBook(msgspec.Struct, kw_only=True):
    symbol: str
    seq: int
    timestamp: str
    depth: int
    bids: list[Level]
    asks: list[Level]


class BookRefused(msgspec.Struct):
    error: str


class PublicTrade(msgspec.Struct, kw_only=True, gc=False):
    """A trade as anyone may see it: no user ids, no order ids."""

    trade_id: str
    symbol: str
    price: str
    quantity: int
    aggressor_side: str
    execution_timestamp: str
    seq: int
    trade_no: int


class PublicTrades(msgspec.Struct, kw_only=True):
    trades: list[PublicTrade]
    pagination: Pagination
    as_of_seq: dict[str, int]


# ---- trades --------------------------------------------------------------------------


FLAG_WORDS = {True: ("true", "1", "yes"), False: ("false", "0", "no")}


def _flag(request: web.Request, name: str) -> bool | None:
    raw = query_text(request, name)
    if raw is None:
        return None
    for value, words in FLAG_WORDS.items():
        if raw.lower() in words:
            return value
    raise invalid(name, f"{name} must be true or false", raw)


def _moment(request: web.Request, name: str) -> datetime | None:
    """An RFC 3339 query timestamp (UTC when it names no offset)."""
    raw = query_text(request, name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise invalid(name, f"{name} must be an RFC 3339 timestamp", raw) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def list_trades(request: web.Request) -> web.Response:
    filters = TradeFilters(
        symbol=query_text(request, "symbol"), order_id=query_uuid(request, "order_id"),
        user_id=owner_filter(identity(request), query_uuid(request, "user_id")),
        settled=_flag(request, "settled"),
        since=_moment(request, "since"), until=_moment(request, "until"))
    page = page_request(request, "trades")
    return json_response(await repository.list_trades(
        request.app[POOL], filters, page, request.app[INSTRUMENTS]))


async def public_trades(request: web.Request) -> web.Response:
    """One instrument's trades, newest first, paged like `GET /trades/`, for anyone."""
    symbol = _symbol(request)
    page = page_request(request, "trades")
    found = await repository.list_trades(request.app[POOL], TradeFilters(symbol=symbol),
                                         page, request.app[INSTRUMENTS])
    return json_response(PublicTrades(
        trades=[PublicTrade(trade_id=t.trade_id, symbol=t.symbol, price=t.price,
                            quantity=t.quantity, aggressor_side=t.aggressor_side,
                            execution_timestamp=t.execution_timestamp, seq=t.seq,
                            trade_no=t.trade_no) for t in found.trades],
        pagination=found.pagination, as_of_seq=found.as_of_seq))


async def get_trade(request: web.Request) -> web.Response:
    trade = uuid_path(request, "trade_id")
    view = await repository.get_trade(request.app[POOL], trade, request.app[INSTRUMENTS])
    caller = identity(request)
    if view is None or (caller is not None and not is_admin(caller) and caller.user_id
                        not in (view.buyer_user_id, view.seller_user_id)):
        raise ApiError(404, "TRADE_NOT_FOUND", f"no trade {trade}")
    return json_response(view)


@requires("admin")
async def settle_trade(request: web.Request) -> web.Response:
    """Settle once: the database decides the winner of a race, the loser gets 409."""
    trade = uuid_path(request, "trade_id")
    at = time.time_ns() // 1000 * 1000  # what PostgreSQL keeps: whole microseconds
    view, exists = await repository.settle(request.app[POOL], trade, moment(at),
                                           request.app[INSTRUMENTS])
    if view is None:
        metrics.SETTLEMENTS.labels("conflict" if exists else "not_found").inc()
        if not exists:
            raise ApiError(404, "TRADE_NOT_FOUND", f"no trade {trade}")
        raise ApiError(409, "TRADE_ALREADY_SETTLED", f"trade {trade} is already settled")
    metrics.SETTLEMENTS.labels("settled").inc()
    event = TradeSettled(trade_id=trade, symbol=view.symbol, settlement_timestamp=at)
    try:
        await request.app[NATS].publish(subjects.settlements(view.symbol),
                                        encoder.encode(event))
    except nats.errors.Error as error:  # the settlement stands; only its notice is lost
        log.error("settlement not published", trade_id=trade, error=repr(error))
    return json_response(Settled(message=f"trade {trade} settled", trade=view))


# ---- candles -------------------------------------------------------------------------


async def list_candles(request: web.Request) -> web.Response:
    """OHLCV from the projected trades, for anyone (public market data)."""
    symbol = _symbol(request)
    interval = query_text(request, "interval") or candles.DEFAULT_INTERVAL
    if interval not in candles.INTERVALS:
        raise invalid("interval", f"interval must be one of {', '.join(candles.INTERVALS)}",
                      interval)
    query = candles.CandleQuery(
        symbol=symbol, interval=interval, since=_moment(request, "since"),
        until=_moment(request, "until"),
        limit=query_int(request, "limit", candles.DEFAULT_LIMIT, 1, candles.MAX_LIMIT))
    return json_response(await candles.read(request.app[POOL], query, datetime.now(UTC),
                                            request.app[INSTRUMENTS]))


# ---- orders --------------------------------------------------------------------------


async def list_orders(request: web.Request) -> web.Response:
    filters = order_filters(request)
    page = page_request(request, "orders")
    return json_body_response(await request.app[READ_MODEL].listing(filters, page))


# ---- order book ----------------------------------------------------------------------


async def _cached_book(redis: Redis, symbol: str) -> BookMessage | None:
    try:
        raw = await redis.get(cache.book_key(symbol))
    except (RedisError, OSError) as error:
        log.warning("redis unavailable, asking svc_orders for the book", error=repr(error))
        return None
    if raw is None:
        return None
    try:
        return _book_decoder.decode(raw)
    except msgspec.DecodeError as error:
        log.warning("cached book unreadable, asking svc_orders", error=str(error))
        return None


async def _requested_book(nc: Nats, symbol: str) -> BookMessage:
    try:
        reply = await nc.request(subjects.BOOK_REQUEST, symbol.encode(), timeout=BOOK_TIMEOUT)
    except (nats.errors.Error, TimeoutError) as error:
        raise ApiError(503, "UNAVAILABLE", "no source of the order book answered",
                       {"reason": type(error).__name__}) from None
    try:
        return _book_decoder.decode(reply.data)
    except msgspec.DecodeError:
        try:
            reason = msgspec.json.decode(reply.data, type=BookRefused).error
        except msgspec.DecodeError:
            reason = "malformed reply"
    raise ApiError(503, "UNAVAILABLE", "the order service gave no order book",
                   {"reason": reason})


def _symbol(request: web.Request) -> str:
    """The `symbol` query parameter (the default instrument when absent), or 404."""
    symbol = query_text(request, "symbol") or DEFAULT_SYMBOL
    if symbol not in request.app[INSTRUMENTS]:
        raise ApiError(404, "UNKNOWN_SYMBOL", f"unknown symbol {symbol!r}", {"symbol": symbol})
    return symbol


async def orderbook(request: web.Request) -> web.Response:
    symbol = _symbol(request)
    depth = query_int(request, "depth", DEFAULT_DEPTH, 1, MAX_DEPTH)
    book = (await _cached_book(request.app[REDIS], symbol)
            or await _requested_book(request.app[NATS], symbol))
    return json_response(OrderBook(symbol=symbol, seq=book.seq, timestamp=book.timestamp,
                                   depth=depth, bids=book.bids[:depth],
                                   asks=book.asks[:depth]))
