"""Projection benchmark: how fast svc_trades folds the journal into PostgreSQL.

The standard workload (../shared/bench/README.md) runs through the real engine until it
has made `--trades` trades; its journaled batches go to JetStream exactly as svc_orders
writes them (msgpack `EventBatch`, `Nats-Msg-Id`). Then, on embedded NATS and
PostgreSQL servers (fsync on, as in production) or on `--nats-url`/`--pg-dsn`:

1. drain: the whole journal is waiting; the projector (svc_trades' own, `--batch`
   messages per transaction) folds it: trades/s and journal messages/s;
2. live: a fresh database, the projector running while another process publishes the
   journal as fast as JetStream takes it: the lag sampled every 0.1 s, in journal
   messages not yet projected and in seconds (how long ago the journal held the last
   message projected), and how long it takes to catch up once publishing stops.

Both runs are checked: PostgreSQL must end with every trade and every order. Prints
one JSON line, with the CPU each run cost per trade (in microseconds): the projector
(this process, which also samples the lag), PostgreSQL (all its processes), nats-server,
and the whole machine. On 2 cores the sum bounds the throughput: 20,000 trades/s needs
it under 100 us.

    python ../shared/bench/workload.py --n 1000000 --seed 1 --out /tmp/w_1m_s1.jsonl
    .venv/bin/python -m ops.bench.projection --workload /tmp/w_1m_s1.jsonl --trades 200000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path

import asyncpg
import nats
import uvloop
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext

from common import subjects
from common.config import Settings
from common.instruments import Instrument
from common.messages import OrderAccepted, OrderRejected, TradeExecuted
from common.service import settle_heap
from ops.bench import cpu
from ops.bench.harness import given_or_started
from ops.bench.journaling import GROUP, fresh_stream, journal, journal_payloads, publisher
from ops.stack import NatsServer, PostgresServer
from svc_trades.migrations import migrate
from svc_trades.projector import Projector

SAMPLE_EVERY = 0.1  # seconds between lag samples


async def fresh_database(admin_dsn: str, name: str) -> str:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name}")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return admin_dsn.rsplit("/", 1)[0] + f"/{name}"


async def position(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT coalesce(max(stream_seq), 0) "
                                   "FROM projection_consumers") or 0)


async def projected(pool: asyncpg.Pool, js: JetStreamContext, end: int,
                    lags: list[int], delays: list[float]) -> None:
    """Wait until the projection reaches stream sequence `end`, sampling `lags` (journal
    messages not projected yet) and `delays` (seconds since the journal held the last
    message projected: at most that long ago, to the sampling interval) as it goes."""
    journaled: list[tuple[float, int]] = []  # (when, the stream's last sequence then)
    while (reached := await position(pool)) < end:
        now, last = time.perf_counter(), await last_seq(js)
        journaled.append((now, last))
        lags.append(last - reached)
        since = next(when for when, held in journaled if held >= reached)
        delays.append(now - since)
        await asyncio.sleep(SAMPLE_EVERY)


async def check(pool: asyncpg.Pool, trades: int, orders: int) -> None:
    counted = (await pool.fetchval("SELECT count(*) FROM trades"),
               await pool.fetchval("SELECT count(*) FROM orders"))
    if counted != (trades, orders):
        raise SystemExit(f"projected (trades, orders) {counted}, expected {(trades, orders)}")


async def last_seq(js: JetStreamContext) -> int:
    return int((await js.stream_info(subjects.STREAM)).state.last_seq)


async def run(args: argparse.Namespace, nats_url: str, admin_dsn: str,
              servers: Mapping[str, int | None]) -> dict[str, object]:
    batches, instruments = journal(args.workload, args.trades)
    trades = sum(type(e) is TradeExecuted for b in batches for e in b.events)
    orders = len({e.order.order_id for b in batches for e in b.events
                  if isinstance(e, OrderAccepted | OrderRejected)})
    payloads = journal_payloads(batches, args.group)
    settle_heap()  # as the service does after start-up
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    result: dict[str, object] = {"messages": len(payloads), "trades": trades, "orders": orders,
                                 "projection_batch": args.batch}
    try:
        await fresh_stream(js)
        started = time.perf_counter()
        await publisher(nats_url, payloads)
        result["publish_msgs_per_s"] = round(len(payloads) / (time.perf_counter() - started))
        result |= await drain_run(args, admin_dsn, nc, instruments, len(payloads), trades,
                                  orders, servers)
        await fresh_stream(js)
        result |= await live_run(args, nats_url, admin_dsn, nc, instruments, payloads, trades,
                                 orders)
    finally:
        await nc.close()
    return result


async def drain_run(args: argparse.Namespace, admin_dsn: str, nc: Nats,
                    instruments: Mapping[str, Instrument], last: int, trades: int,
                    orders: int, servers: Mapping[str, int | None]) -> dict[str, object]:
    """The whole journal is waiting: pure projection throughput, and its CPU cost."""
    dsn = await fresh_database(admin_dsn, "bench_drain")
    async with asyncpg.create_pool(dsn, min_size=1, max_size=2) as pool:
        await migrate(pool)
        projector = Projector(pool, nc, instruments, batch=args.batch)
        meter = cpu.Meter(servers, this="projector")
        started = time.perf_counter()
        task = asyncio.get_running_loop().create_task(projector.run())
        await projected(pool, nc.jetstream(), last, [], [])
        seconds = time.perf_counter() - started
        used = meter.seconds()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await check(pool, trades, orders)
    return {"drain_seconds": round(seconds, 2), "drain_trades_per_s": round(trades / seconds),
            "drain_msgs_per_s": round(last / seconds),
            "drain_cpu_us_per_trade": {name: round(spent / trades * 1e6, 1)
                                       for name, spent in used.items()}}


async def live_run(args: argparse.Namespace, nats_url: str, admin_dsn: str, nc: Nats,
                   instruments: Mapping[str, Instrument],
                   payloads: list[tuple[str, bytes, str]], trades: int,
                   orders: int) -> dict[str, object]:
    """Projecting while the journal grows as fast as JetStream takes it: the lag."""
    dsn = await fresh_database(admin_dsn, "bench_live")
    async with asyncpg.create_pool(dsn, min_size=1, max_size=2) as pool:
        await migrate(pool)
        projector = Projector(pool, nc, instruments, batch=args.batch)
        loop = asyncio.get_running_loop()
        task = loop.create_task(projector.run())
        lags: list[int] = []
        delays: list[float] = []
        sampler = loop.create_task(projected(pool, nc.jetstream(), len(payloads), lags,
                                             delays))
        started = time.perf_counter()
        await publisher(nats_url, payloads)
        published = time.perf_counter()
        await sampler
        done = time.perf_counter()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await check(pool, trades, orders)
    return {"live_publish_msgs_per_s": round(len(payloads) / (published - started)),
            "live_trades_per_s": round(trades / (done - started)),
            "live_lag_max_msgs": max(lags, default=0),
            "live_lag_median_msgs": round(statistics.median(lags)) if lags else 0,
            "live_lag_max_seconds": round(max(delays, default=0.0), 2),
            "live_lag_median_seconds": round(statistics.median(delays), 2) if delays else 0,
            "live_catch_up_seconds": round(done - published, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", type=Path, required=True)
    parser.add_argument("--group", type=int, default=GROUP,
                        help="commands per journal message (group commit; 1: one each)")
    parser.add_argument("--trades", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=Settings().projection_batch,
                        help="journal messages per projection transaction (EX_PROJECTION_BATCH)")
    parser.add_argument("--nats-url", help="an existing NATS (its EXCHANGE stream is replaced)")
    parser.add_argument("--pg-dsn", help="an existing PostgreSQL (bench_* databases)")
    args = parser.parse_args()
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_proj_")))
        servers: dict[str, int | None] = {}
        nats_url, servers["nats"] = given_or_started(stack, args.nats_url,
                                                     lambda: NatsServer(folder / "nats"))
        pg_dsn, servers["postgres"] = given_or_started(stack, args.pg_dsn,
                                                       lambda: PostgresServer(folder / "pg"))
        uvloop.install()  # as `python -m svc_trades` runs
        print(json.dumps(asyncio.run(run(args, nats_url, pg_dsn, servers))))


if __name__ == "__main__":
    main()
