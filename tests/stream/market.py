"""A stand-in for svc_orders' market-data publisher, honouring its contract: Redis is
written before NATS, trades carry a gap-free `trade_no`, books a non-decreasing seq."""

from typing import Any

import msgspec
from aiohttp import ClientWebSocketResponse, WSMsgType
from nats.aio.client import Client as Nats
from redis.asyncio import Redis

from common import cache, subjects
from common.views import BookMessage, Level, TradesMessage, TradeView, json_encoder

RECEIVE_TIMEOUT = 5.0
TIME = "2026-11-24T14:05:20.123456Z"


def trade(symbol: str, seq: int, trade_no: int, price: str = "100.25") -> TradeView:
    return TradeView(
        trade_id=f"t-{trade_no}", symbol=symbol, price=price, quantity=1,
        bid_order_id="b", ask_order_id="a", buyer_user_id=None, seller_user_id=None,
        aggressor_side="buy", execution_timestamp=TIME, seq=seq, trade_no=trade_no)


def book(symbol: str, seq: int, levels: int, kind: str = "update") -> BookMessage:
    return BookMessage(
        type="snapshot" if kind == "snapshot" else "update", symbol=symbol, seq=seq,
        timestamp=TIME, bids=[Level(f"{100 - i}.00", i + 1, 1) for i in range(levels)],
        asks=[Level(f"{101 + i}.00", i + 1, 1) for i in range(levels)])


async def publish_trades(nc: Nats, symbol: str, seq: int, trades: list[TradeView]) -> None:
    message = TradesMessage(type="update", symbol=symbol, seq=seq, trades=trades)
    await nc.publish(subjects.trades(symbol), json_encoder.encode(message))


async def cache_trades(redis: Redis, symbol: str, trades: list[TradeView]) -> None:
    key = cache.trades_key(symbol)
    await redis.lpush(key, *(json_encoder.encode(t) for t in trades))
    await redis.ltrim(key, 0, cache.RECENT_TRADES - 1)


async def trade_command(nc: Nats, redis: Redis, symbol: str, seq: int,
                        trades: list[TradeView]) -> None:
    """What svc_orders does after a command that traded: cache first, then publish."""
    await cache_trades(redis, symbol, trades)
    await publish_trades(nc, symbol, seq, trades)


async def publish_book(nc: Nats, message: BookMessage) -> None:
    await nc.publish(subjects.book(message.symbol), json_encoder.encode(message))


async def receive(ws: ClientWebSocketResponse, seconds: float = RECEIVE_TIMEOUT) -> Any:
    """The next message, which must be a JSON text frame (within `seconds`)."""
    message = await ws.receive(timeout=seconds)
    assert message.type is WSMsgType.TEXT, message
    return msgspec.json.decode(message.data)
