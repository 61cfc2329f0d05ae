"""svc_trades as operators see it: probes, metrics, and a real process killed mid-batch."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import asyncpg
from nats.js import JetStreamContext

from common.config import Settings
from ops.stack import free_port
from svc_trades import api
from tests.helpers import AppClient, eventually
from tests.trades.journal import (
    assert_projects,
    caught_up,
    publish,
    random_batches,
    stream_position,
)


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


async def test_kill_9_mid_batch_then_restart_ends_the_same(
        settings: Settings, pool: asyncpg.Pool, js: JetStreamContext, tmp_path: Path) -> None:
    batches = random_batches(2_000, seed=7)
    await publish(js, batches)
    last = (await js.stream_info("EXCHANGE")).state.last_seq
    port = free_port()
    service = start_service(settings, port, tmp_path / "svc_trades.log")
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

    service = start_service(settings, port, tmp_path / "svc_trades.log")
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
    await assert_projects(pool, batches)
