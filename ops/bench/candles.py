"""Candles benchmark: how long `GET /candles/` takes to read a day of one-minute candles
when the projection holds a million trades (target: under 20 ms), and what rolling the
candles up costs the projection.

On an embedded PostgreSQL (or `--pg-dsn`), a fresh database gets `--trades` trades of
one instrument spread evenly over `--days` days (the trades table by COPY, as the
projection writes it), while the candles are rolled up by `svc_trades.candles.record`
in transactions of `--batch` trades, as the projection calls it. Then the query that
answers `GET /candles/` (`svc_trades.candles.read`) asks for the last day, `--repeat`
times per interval (1m, 1h, 1d): latency percentiles in milliseconds. For comparison,
the same day of 1m candles grouped straight from the trades table, as it would be
without the rollup. Prints one JSON line.

    .venv/bin/python -m ops.bench.candles --trades 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from random import Random

import asyncpg
import uvloop

from common.instruments import DEFAULT_INSTRUMENT
from common.views import trade_id
from ops.bench.harness import given_or_started, percentile
from ops.bench.projection import fresh_database
from ops.stack import PostgresServer
from svc_trades import candles
from svc_trades.migrations import migrate
from svc_trades.rows import TradeRow, Uuid, columns, values

SYMBOL = DEFAULT_INSTRUMENT.symbol
INSTRUMENTS = {SYMBOL: DEFAULT_INSTRUMENT}
END = datetime(2026, 11, 24, tzinfo=UTC)  # the trades end here, the asked day before it
# The same day grouped from the raw trades, first and last by trade number.
FROM_TRADES = """
SELECT date_trunc('minute', execution_timestamp) AS start,
       (array_agg(price ORDER BY trade_no))[1], max(price), min(price),
       (array_agg(price ORDER BY trade_no DESC))[1], sum(quantity), count(*)
FROM trades WHERE symbol = $1 AND execution_timestamp >= $2 AND execution_timestamp < $3
GROUP BY start ORDER BY start"""


def trades(count: int, days: int, seed: int) -> list[TradeRow]:
    """`count` trades evenly over `days` days before END, prices on a random walk."""
    rng = Random(seed)
    span = timedelta(days=days) / count
    start = END - timedelta(days=days)
    price, made = 10_000, []
    for n in range(1, count + 1):
        price = max(1, price + rng.randrange(-3, 4))
        made.append(TradeRow(
            trade_id=Uuid(trade_id(SYMBOL, n)), symbol=SYMBOL, trade_no=n, seq=n,
            price=Decimal(price).scaleb(-2), quantity=rng.randrange(1, 100),
            buy_order_id=f"b{n}", sell_order_id=f"s{n}", buyer_user_id=None,
            seller_user_id=None, aggressor_side=rng.choice(("buy", "sell")),
            execution_timestamp=start + span * (n - 1)))
    return made


async def load(pool: asyncpg.Pool, made: list[TradeRow], batch: int) -> dict[str, float]:
    """Write the trades and roll their candles up, batch by batch, as the projection does;
    the seconds each part took."""
    copy = rollup = 0.0
    async with pool.acquire() as conn:
        for start in range(0, len(made), batch):
            part = made[start:start + batch]
            async with conn.transaction():
                began = time.perf_counter()
                await conn.copy_records_to_table("trades", records=map(values, part),
                                                 columns=columns(TradeRow))
                middle = time.perf_counter()
                await candles.record(conn, part)
                rollup += time.perf_counter() - middle
                copy += middle - began
        await conn.execute("VACUUM ANALYZE trades")
        await conn.execute("VACUUM ANALYZE candles")
    return {"copy": copy, "rollup": rollup}


async def timed(repeat: int, call: Callable[[], Awaitable[None]]) -> dict[str, float]:
    """Latency percentiles (ms) of `repeat` awaited calls of `call()`."""
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return {"p50_ms": round(percentile(samples, 0.5), 2),
            "p99_ms": round(percentile(samples, 0.99), 2), "max_ms": round(samples[-1], 2)}


async def run(args: argparse.Namespace, admin_dsn: str) -> dict[str, object]:
    made = trades(args.trades, args.days, args.seed)
    dsn = await fresh_database(admin_dsn, "bench_candles")
    result: dict[str, object] = {"trades": args.trades, "days": args.days, "batch": args.batch}
    async with asyncpg.create_pool(dsn, min_size=1, max_size=2) as pool:
        await migrate(pool)
        seconds = await load(pool, made, args.batch)
        result["rollup_us_per_trade"] = round(seconds["rollup"] / args.trades * 1e6, 2)
        result["copy_us_per_trade"] = round(seconds["copy"] / args.trades * 1e6, 2)
        result["candle_rows"] = await pool.fetchval("SELECT count(*) FROM candles")
        since = END - timedelta(days=1)
        for interval in ("1m", "1h", "1d"):
            query = candles.CandleQuery(symbol=SYMBOL, interval=interval, since=since,
                                        until=END, limit=candles.MAX_LIMIT)
            found = await candles.read(pool, query, END, INSTRUMENTS)
            if interval == "1m" and len(found.candles) != 1440:
                raise SystemExit(f"a day of 1m candles is 1440, got {len(found.candles)}")

            async def answer(query: candles.CandleQuery = query) -> None:
                await candles.read(pool, query, END, INSTRUMENTS)
            result[f"read_day_{interval}"] = await timed(args.repeat, answer)

        async def from_trades() -> None:
            await pool.fetch(FROM_TRADES, SYMBOL, since, END)
        result["day_1m_from_raw_trades"] = await timed(max(1, args.repeat // 20), from_trades)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8000, help="trades per transaction")
    parser.add_argument("--repeat", type=int, default=200, help="reads per interval")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pg-dsn", help="an existing PostgreSQL (a bench_candles database)")
    args = parser.parse_args()
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_candles_")))
        pg_dsn, _ = given_or_started(stack, args.pg_dsn, lambda: PostgresServer(folder / "pg"))
        uvloop.install()  # as `python -m svc_trades` runs
        print(json.dumps(asyncio.run(run(args, pg_dsn))))


if __name__ == "__main__":
    main()
