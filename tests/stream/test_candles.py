"""The `candles` channel: svc_trades' recent candles, then the current candle on every
trade, with nothing lost or repeated between the two, across a minute boundary.

Time here is the trades' own: a stand-in svc_orders publishes trades whose execution
timestamps the test chooses (the minute turns when a trade says so, no sleeping), and a
stand-in svc_trades answers the snapshot question with chosen candles.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from redis.asyncio import Redis

from common import subjects
from common.messages import encoder
from common.queries import CandlesFound, RecentCandles
from common.views import Candle, CandleList, TradeView
from svc_stream import candles, endpoints
from svc_stream.candles import fold
from tests.helpers import eventually, routed
from tests.stream.conftest import Client, MakeStream
from tests.stream.market import cache_trades, publish_trades, receive, trade, trade_command

Json = dict[str, Any]
MINUTE = "2026-11-24T14:05"
NEXT_MINUTE = "2026-11-24T14:06"


def at(symbol: str, seq: int, price: str, moment: str, quantity: int = 1) -> TradeView:
    made = trade(symbol, seq, seq, price)
    made.execution_timestamp, made.quantity = moment, quantity
    return made


def candle(start: str, o: str, h: str, low: str, c: str, volume: int, trades: int) -> Json:
    return {"start": f"{start}:00.000000Z", "open": o, "high": h, "low": low, "close": c,
            "volume": volume, "trades": trades}


@asynccontextmanager
async def svc_trades(nc: Nats, symbol: str, seq: int, candles: list[Json],
                     before_answer: Callable[[RecentCandles], Awaitable[None]] | None = None,
                     ) -> AsyncIterator[list[RecentCandles]]:
    """A stand-in for svc_trades' answer to the snapshot question (after `before_answer`)."""
    asked: list[RecentCandles] = []

    async def answer(msg: Msg) -> None:
        question = msgspec.msgpack.decode(msg.data, type=RecentCandles)
        if question.symbol != symbol:
            return
        asked.append(question)
        if before_answer is not None:
            await before_answer(question)
        await msg.respond(encoder.encode(CandlesFound(candles=CandleList(
            symbol=symbol, interval="1m", as_of_seq=seq,
            candles=[msgspec.convert(c, Candle) for c in candles]))))

    subscription = await nc.subscribe(subjects.CANDLES_QUERY, cb=answer)
    # Asked about no instrument of ours, the stand-in stays silent: reached all the same.
    await routed(nc, subjects.CANDLES_QUERY,
                 encoder.encode(RecentCandles(symbol="PROBE", seq=0, limit=1)))
    try:
        yield asked
    finally:
        await subscription.unsubscribe()


async def subscribe(stream: Client, symbol: str) -> Any:
    ws = await stream.ws_connect("/ws/")
    await ws.send_json({"type": "subscribe", "channels": ["candles"], "symbols": [symbol]})
    assert (await receive(ws))["type"] == "subscribed"
    return ws


async def test_snapshot_then_live_without_a_gap_across_the_minute(
        stream: Client, nc: Nats, redis: Redis, symbols: list[str]) -> None:
    symbol = symbols[0]
    await cache_trades(redis, symbol, [at(symbol, n, "100.00", f"{MINUTE}:0{n}.000000Z")
                                       for n in (1, 2, 3)])
    recent = [candle("2026-11-24T14:04", "98.00", "98.00", "98.00", "98.00", 5, 1),
              candle(MINUTE, "100.00", "101.00", "99.00", "100.50", 3, 3)]

    async def trade_meanwhile(question: RecentCandles) -> None:
        """Trade 4 happens while the snapshot is being read: it must not be lost."""
        await trade_command(nc, redis, symbol, 4, [at(symbol, 4, "102.00",
                                                      f"{MINUTE}:50.000000Z", 2)])
        feed = stream.app[endpoints.RELAY].candles[symbol]
        await eventually(lambda: bool(feed.pending))  # kept, until the snapshot is there

    async with svc_trades(nc, symbol, 3, recent, trade_meanwhile) as asked:
        ws = await subscribe(stream, symbol)
        snapshot = await receive(ws)
        assert snapshot == {"type": "snapshot", "channel": "candles", "symbol": symbol,
                            "seq": 3, "interval": "1m", "candles": recent}
        assert asked[0].seq == 3  # counted up to the newest trade svc_orders cached
        update = await receive(ws)
        assert (update["type"], update["seq"]) == ("update", 4)
        assert update["candles"] == [candle(MINUTE, "100.00", "102.00", "99.00", "102.00", 5, 4)]

        await publish_trades(nc, symbol, 4, [at(symbol, 4, "102.00", f"{MINUTE}:50.000000Z")])
        await publish_trades(nc, symbol, 5, [at(symbol, 5, "97.50", f"{NEXT_MINUTE}:00.000001Z"),
                                             at(symbol, 5, "97.75", f"{NEXT_MINUTE}:00.000001Z")])
        update = await receive(ws)  # the repeated seq 4 sent nothing
        assert (update["seq"], update["candles"]) == (
            5, [candle(NEXT_MINUTE, "97.50", "97.75", "97.50", "97.75", 2, 2)])

        late = await subscribe(stream, symbol)  # a second client joins the live feed
        assert (await receive(late))["type"] == "snapshot"
        await publish_trades(nc, symbol, 6, [at(symbol, 6, "98.00", f"{NEXT_MINUTE}:30.000000Z")])
        expected = candle(NEXT_MINUTE, "97.50", "98.00", "97.50", "98.00", 3, 3)
        assert (await receive(ws))["candles"] == [expected]
        assert (await receive(late))["candles"] == [expected]


async def test_without_svc_trades_the_live_trades_build_the_candle(
        make_stream: MakeStream, nc: Nats, symbols: list[str]) -> None:
    stream = await make_stream(query_timeout=0.2)
    symbol = symbols[1]
    ws = await subscribe(stream, symbol)
    snapshot = await receive(ws)
    assert (snapshot["seq"], snapshot["candles"]) == (0, [])
    await publish_trades(nc, symbol, 1, [at(symbol, 1, "100.25", f"{MINUTE}:10.000000Z")])
    assert (await receive(ws))["candles"] == [
        candle(MINUTE, "100.25", "100.25", "100.25", "100.25", 1, 1)]


def test_fold_keeps_earlier_minutes_out_of_the_current_candle() -> None:
    current = Candle(start=f"{MINUTE}:00.000000Z", open="1.00", high="1.00", low="1.00",
                     close="1.00", volume=1, trades=1)
    changed = fold(current, [at("S", 1, "9.00", "2026-11-24T14:04:59.000000Z"),
                             at("S", 1, "2.00", f"{MINUTE}:59.999999Z")])
    assert msgspec.to_builtins(changed) == [
        candle(MINUTE, "1.00", "2.00", "1.00", "2.00", 2, 2)]


async def test_after_a_nats_reconnect_the_feed_starts_again_from_a_snapshot(
        stream: Client, nc: Nats, redis: Redis, symbols: list[str]) -> None:
    symbol = symbols[2]
    before = candle(MINUTE, "100.00", "100.00", "100.00", "100.00", 1, 1)
    async with svc_trades(nc, symbol, 1, [before]):
        ws = await subscribe(stream, symbol)
        assert (await receive(ws))["candles"] == [before]
    # Trade 2 was published while svc_stream's NATS connection was down: only svc_trades
    # (and the Redis cache) have it.
    await cache_trades(redis, symbol, [at(symbol, 2, "103.00", f"{MINUTE}:20.000000Z")])
    missed = candle(MINUTE, "100.00", "103.00", "100.00", "103.00", 2, 2)
    async with svc_trades(nc, symbol, 2, [missed]) as asked:
        await candles.catch_up(stream.app[endpoints.RELAY].candles,
                               stream.app[endpoints.CANDLE_SOURCE])
        assert asked[0].seq == 2
    update = await receive(ws)
    assert (update["seq"], update["candles"]) == (2, [missed])
    await publish_trades(nc, symbol, 3, [at(symbol, 3, "99.00", f"{MINUTE}:30.000000Z")])
    assert (await receive(ws))["candles"] == [
        candle(MINUTE, "100.00", "103.00", "99.00", "99.00", 3, 3)]
