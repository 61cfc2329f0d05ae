"""svc_trades as operators see it: probes, metrics, and a real process killed mid-batch,
on a journal without balances and on a funded one (the ledger ends balanced)."""

import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg
from nats.js import JetStreamContext

from common.config import Settings
from common.messages import (
    EventBatch,
    FundsExchanged,
    FundsHeld,
    FundsReleased,
    FundsTransferred,
)
from ops.stack import free_port
from svc_trades import api
from tests.helpers import AppClient, eventually
from tests.trades.journal import (
    assert_projects,
    caught_up,
    funded_batches,
    publish,
    random_batches,
    stream_position,
)
from tests.trades.ledger import assert_balanced, assert_double_entry


async def test_health_ready_and_metrics(trades: AppClient) -> None:
    health = await trades.get("/health/")
    assert (health.status, await health.json()) == (200, {"status": "ok"})

    async def ready() -> bool:
        return (await trades.get("/ready")).status == 200
    await eventually(ready)
    assert await (await trades.get("/ready/")).json() == {"ready": True}
    metrics = await (await trades.get("/metrics")).text()
    for name in ("trades_projection_lag_messages", "trades_projection_batch_messages",
                 "trades_projection_batch_seconds", "trades_settlements_total"):
        assert name in metrics

    await trades.app[api.NATS].close()  # the journal is out of reach: not ready
    response = await trades.get("/ready/")
    assert (response.status, await response.json()) == (503, {"ready": False})


def start_service(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "EX_NATS_URL": settings.nats_url, "EX_PG_DSN": settings.pg_dsn,
           "EX_REDIS_URL": settings.redis_url, "EX_TRADES_PORT": str(port),
           "EX_INSTRUMENTS_FILE": str(settings.instruments_file),
           "EX_PROJECTION_BATCH": "5", "EX_LOG_FORMAT": "json"}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "svc_trades"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


async def killed_mid_run_and_restarted(
        settings: Settings, pool: asyncpg.Pool, js: JetStreamContext, log: Path,
        killed: Callable[[], Awaitable[None]] | None = None) -> None:
    """Start the real svc_trades on the journal published, SIGKILL it once it has
    projected a quarter of it (then run `killed`, on what it left), start it again and
    wait until it has projected all of it and stopped cleanly."""
    last = (await js.stream_info("EXCHANGE")).state.last_seq
    port = free_port()
    service = start_service(settings, port, log)
    try:
        async def started() -> bool:
            return await stream_position(pool) > last // 4
        await eventually(started, timeout=20.0)
        service.send_signal(signal.SIGKILL)
        service.wait()
        assert await stream_position(pool) < last  # it really died mid-run
    finally:
        service.kill()
        service.wait()
    if killed is not None:
        await killed()

    service = start_service(settings, port, log)
    try:
        async with aiohttp.ClientSession() as http:
            async def ready() -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/ready/") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False
            await eventually(ready, timeout=20.0)
        await caught_up(pool, js)
    finally:
        service.terminate()
        assert service.wait(10) == 0


async def test_kill_9_mid_batch_then_restart_ends_the_same(
        settings: Settings, pool: asyncpg.Pool, js: JetStreamContext, tmp_path: Path) -> None:
    batches = random_batches(2_000, seed=7)
    await publish(js, batches)
    await killed_mid_run_and_restarted(settings, pool, js, tmp_path / "svc_trades.log")
    await assert_projects(pool, batches)


def legs(batches: list[EventBatch]) -> int:
    """How many postings the journal's balance events make (those of a zero amount, a
    fee of 0, are none), counted from the events, not by the projector's code."""
    count = 0
    for batch in batches:
        for event in batch.events:
            if isinstance(event, FundsTransferred | FundsHeld | FundsReleased):
                count += event.amount > 0
            elif isinstance(event, FundsExchanged):
                count += sum(amount > 0 for amount in (
                    event.amount, event.base_amount, event.buyer_fee, event.seller_fee))
    return count


async def test_kill_9_mid_funded_batch_then_restart_leaves_the_ledger_balanced(
        settings: Settings, pool: asyncpg.Pool, js: JetStreamContext, tmp_path: Path) -> None:
    batches, engine = funded_batches(2_000, seed=11)
    await publish(js, batches)
    posted_when_killed = []

    async def killed() -> None:  # what the dead process committed is balanced already
        await assert_double_entry(pool)
        posted_when_killed.append(await pool.fetchval("SELECT count(*) FROM postings"))

    await killed_mid_run_and_restarted(settings, pool, js, tmp_path / "svc_trades.log",
                                       killed)
    await assert_projects(pool, batches)
    await assert_balanced(pool, engine)
    total = await pool.fetchval("SELECT count(*) FROM postings")
    assert 0 < posted_when_killed[0] < total == legs(batches)
