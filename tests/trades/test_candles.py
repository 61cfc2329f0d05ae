"""Candles: `GET /candles/` against a plain Python fold of the same trades.

The fold is the definition: a candle is an interval's trades, open = the first trade's
price (in trade number order), close = the last's, high, low, volume = the quantities
summed, trades = how many; intervals without trades are left out. Random trade sets of
two instruments (two price grids) cross minute, hour and day boundaries, arrive in
random batches (one batch written twice), and are asked for in every interval over
random ranges.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from random import Random
from typing import Any

import asyncpg
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext

from common.views import TradeView, timestamp
from svc_trades import candles
from svc_trades.rows import TradeRow, Uuid, micros, moment
from tests.helpers import AppClient
from tests.openapi_check import check_answer
from tests.trades.journal import (
    BASE_NS,
    INSTRUMENTS,
    caught_up,
    fold,
    projecting,
    publish,
    random_batches,
)

Json = dict[str, Any]
SECOND = 1_000_000_000
SEEDS = 25


def expected(trades: Iterable[TradeView], symbol: str, interval: str,
             since: datetime | None = None, until: datetime | None = None) -> list[Json]:
    """The candles of `trades` by the definition, oldest first."""
    size = candles.INTERVALS[interval]
    buckets: dict[int, list[TradeView]] = {}
    for trade in sorted(trades, key=lambda t: t.trade_no):
        if trade.symbol != symbol:
            continue
        at = micros(datetime.fromisoformat(trade.execution_timestamp))
        buckets.setdefault(at // size * size, []).append(trade)
    low = None if since is None else micros(since) // size * size
    high = None if until is None else micros(until)
    return [{"start": timestamp(start * 1000), "open": group[0].price,
             "high": max(group, key=lambda t: Decimal(t.price)).price,
             "low": min(group, key=lambda t: Decimal(t.price)).price,
             "close": group[-1].price, "volume": sum(t.quantity for t in group),
             "trades": len(group)}
            for start, group in sorted(buckets.items())
            if (low is None or start >= low) and (high is None or start < high)]


def random_trades(rng: Random) -> list[TradeView]:
    """Trades of both instruments, times rising by jumps of a second to a day, so that
    candles of every interval hold one trade or many."""
    at = BASE_NS + rng.randrange(0, 86_400) * SECOND
    numbers = dict.fromkeys(INSTRUMENTS, 0)
    trades = []
    for seq in range(1, rng.randrange(1, 120)):
        at += rng.choice((0, SECOND, 7 * SECOND, 50 * SECOND, 3_600 * SECOND,
                          86_400 * SECOND)) + rng.randrange(SECOND)
        symbol = rng.choice(list(INSTRUMENTS))
        numbers[symbol] += 1
        instrument = INSTRUMENTS[symbol]
        price = rng.randrange(1, 40) * instrument.tick
        trades.append(TradeView(
            trade_id=str(numbers[symbol]), symbol=symbol, price=instrument.format_price(price),
            quantity=rng.randrange(1, 20) * instrument.lot, bid_order_id="b", ask_order_id="a",
            buyer_user_id=None, seller_user_id=None, aggressor_side="buy",
            execution_timestamp=timestamp(at), seq=seq, trade_no=numbers[symbol]))
    return trades


def row(trade: TradeView) -> TradeRow:
    return TradeRow(
        trade_id=Uuid(trade.trade_id), symbol=trade.symbol, trade_no=trade.trade_no,
        seq=trade.seq, price=Decimal(trade.price), quantity=trade.quantity,
        buy_order_id="b", sell_order_id="a", buyer_user_id=None, seller_user_id=None,
        aggressor_side="buy",
        execution_timestamp=moment(micros(datetime.fromisoformat(
            trade.execution_timestamp)) * 1000))


async def write_in_batches(pool: asyncpg.Pool, trades: list[TradeView], rng: Random) -> None:
    """As the projection does: a batch per transaction; one batch comes twice."""
    cuts = sorted(rng.sample(range(1, len(trades)), min(len(trades) - 1, 4)))
    batches = [trades[a:b] for a, b in zip([0, *cuts], [*cuts, len(trades)], strict=True)]
    batches.append(rng.choice(batches))
    for batch in batches:
        async with pool.acquire() as conn, conn.transaction():
            await candles.record(conn, [row(t) for t in batch])


def moment_near(rng: Random, trades: list[TradeView]) -> datetime:
    at = datetime.fromisoformat(rng.choice(trades).execution_timestamp)
    return at + timedelta(seconds=rng.randrange(-100_000, 100_000))


async def get_candles(api: AppClient, **query: str) -> list[Json]:
    """The candles the endpoint answers, checked against the service's own OpenAPI."""
    response = await api.get("/candles/", params=query)
    assert response.status == 200, await response.text()
    body: Json = await response.json()
    check_answer(await (await api.get("/openapi.json")).json(), "GET", "/candles/", 200, body)
    return list(body["candles"])


async def test_candles_are_the_fold_of_the_trades(pool: asyncpg.Pool,
                                                  trades: AppClient) -> None:
    for seed in range(SEEDS):
        rng = Random(seed)
        await pool.execute("TRUNCATE candles")
        made = random_trades(rng)
        await write_in_batches(pool, made, rng)
        for symbol in INSTRUMENTS:
            for interval in candles.INTERVALS:
                since, until = moment_near(rng, made), moment_near(rng, made)
                everything = await get_candles(
                    trades, symbol=symbol, interval=interval, limit="1500",
                    since="1970-01-01T00:00:00Z", until="2100-01-01T00:00:00Z")
                assert everything == expected(made, symbol, interval), (seed, interval)
                ranged = await get_candles(trades, symbol=symbol, interval=interval,
                                           since=since.isoformat(), until=until.isoformat())
                assert ranged == expected(made, symbol, interval, since, until), (
                    seed, interval, since, until)


async def test_without_since_the_latest_candles_up_to_now(pool: asyncpg.Pool,
                                                          trades: AppClient) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    made = [TradeView(trade_id="1", symbol="DEFAULT", price=f"{n}.00", quantity=1,
                      bid_order_id="b", ask_order_id="a", buyer_user_id=None,
                      seller_user_id=None, aggressor_side="sell",
                      execution_timestamp=timestamp(
                          micros(now - timedelta(minutes=n)) * 1000),
                      seq=10 - n, trade_no=10 - n) for n in range(10)]
    await write_in_batches(pool, sorted(made, key=lambda t: t.trade_no), Random(1))
    while True:  # the clock's minute decides the window: ask again if it turned meanwhile
        asked = datetime.now(UTC).replace(second=0, microsecond=0)
        latest = await get_candles(trades, limit="3")
        if datetime.now(UTC).replace(second=0, microsecond=0) == asked:
            break
    assert latest == expected(made, "DEFAULT", "1m", since=asked - timedelta(minutes=2))
    if asked == now.replace(second=0):
        assert latest[-1]["close"] == "0.00"  # the current minute's candle is there


async def test_the_projection_rolls_candles_up_with_the_trades(
        pool: asyncpg.Pool, nc: Nats, js: JetStreamContext, trades: AppClient) -> None:
    batches = random_batches(400, seed=11, step_ns=7 * SECOND + 1_234)
    await publish(js, batches)
    async with projecting(pool, nc, batch=23):
        await caught_up(pool, js)
    _, made = fold(batches)
    assert len({t.execution_timestamp[:16] for t in made}) > 10  # many minutes
    for symbol in INSTRUMENTS:
        for interval in ("1m", "5m", "1h"):
            found = await get_candles(trades, symbol=symbol, interval=interval,
                                      since="2020-01-01T00:00:00Z", limit="1500")
            assert found == expected(made, symbol, interval), (symbol, interval)
    response = await trades.get("/candles/", params={"symbol": "ALT"})
    assert (await response.json())["as_of_seq"] == max(
        b.seq for b in batches if b.symbol == "ALT")


async def test_bad_candle_queries_answer_400_or_404(trades: AppClient) -> None:
    spec = await (await trades.get("/openapi.json")).json()
    for query, status in (({"interval": "2m"}, 400), ({"limit": "0"}, 400),
                          ({"limit": "1501"}, 400), ({"since": "yesterday"}, 400),
                          ({"symbol": "NOPE"}, 404)):
        response = await trades.get("/candles/", params=query)
        assert response.status == status, query
        check_answer(spec, "GET", "/candles/", status, await response.json())
