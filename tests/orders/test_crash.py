"""kill -9 in the middle of a command stream loses nothing that was acknowledged.

svc_orders runs as a real process. Commands go one at a time so that at the kill at
most one is in flight: after the restart the book must equal a reference engine fed
the acknowledged commands, or those plus the one in flight (its outcome was unknown).
"""

import asyncio
import os
import random
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats
import pytest

from common import subjects
from common.instruments import DEFAULT_INSTRUMENT, DEFAULT_SYMBOL
from common.messages import (
    CancelOrder,
    Command,
    ModifyOrder,
    OrderType,
    PlaceOrder,
    Side,
    TimeInForce,
)
from common.views import BookMessage, levels
from ops.stack import NatsServer, RedisServer, free_port
from svc_orders.matching import Exchange
from tests.helpers import eventually

COMMANDS = 1_500
USERS = ["123e4567-e89b-12d3-a456-42661417400" + str(n) for n in range(4)]
INSTRUMENTS = {DEFAULT_SYMBOL: DEFAULT_INSTRUMENT}


def start_service(nats_url: str, redis_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "EX_NATS_URL": nats_url, "EX_REDIS_URL": redis_url,
           "EX_ORDERS_PORT": str(port), "EX_SNAPSHOT_EVERY": "200", "EX_LOG_FORMAT": "json"}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "svc_orders"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


async def until_ready(http: aiohttp.ClientSession, base: str) -> bool:
    try:
        async with http.get(f"{base}/ready/") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


def request_for(rng: random.Random, live: list[str]) -> tuple[str, str, dict[str, Any]]:
    if live and rng.random() < 0.35:
        order_id = rng.choice(live)
        if rng.random() < 0.5:
            return "DELETE", f"/orders/{order_id}/", {}
        return "PUT", f"/orders/{order_id}/", {"price": f"{rng.randint(9_950, 10_050) / 100}"}
    kind = rng.random()
    body: dict[str, Any] = {"side": rng.choice(["buy", "sell"]),
                            "quantity": rng.randint(1, 50), "user_id": rng.choice(USERS)}
    if kind < 0.05:
        body["type"] = "market"
    else:
        body["price"] = f"{rng.randint(9_950, 10_050) / 100}"
        body["time_in_force"] = "IOC" if kind < 0.1 else "GTC"
    return "POST", "/orders/", body


def command_for(method: str, path: str, body: dict[str, Any], order_id: str) -> Command:
    if method == "DELETE":
        return CancelOrder(order_id=order_id)
    if method == "PUT":
        return ModifyOrder(order_id=order_id,
                           price=DEFAULT_INSTRUMENT.to_units(Decimal(body["price"])))
    market = body.get("type") == "market"
    return PlaceOrder(
        order_id=order_id, symbol=DEFAULT_SYMBOL, side=Side(body["side"]),
        quantity=body["quantity"], user_id=body["user_id"],
        price=None if market else DEFAULT_INSTRUMENT.to_units(Decimal(body["price"])),
        type=OrderType.MARKET if market else OrderType.LIMIT,
        time_in_force=TimeInForce(body.get("time_in_force", "IOC" if market else "GTC")))


async def send_until_killed(http: aiohttp.ClientSession, base: str,
                            service: subprocess.Popen[bytes], rng: random.Random,
                            kill_at: int, acked: list[Command]) -> Command:
    """Send random commands one at a time, adding each acknowledged one to `acked`, and
    kill -9 `service` while the `kill_at`-th is in flight; that command is returned."""
    live: list[str] = []
    for n in range(kill_at + 1):
        method, path, body = request_for(rng, live)
        target = path.split("/")[2] if method != "POST" else "in-flight"
        call = asyncio.ensure_future(http.request(method, base + path, json=body))
        if n == kill_at:
            await asyncio.sleep(rng.random() * 0.002)
            service.send_signal(signal.SIGKILL)
            service.wait()
            call.cancel()
            return command_for(method, path, body, target)
        async with await call as response:
            answer = await response.json()
        if response.status in (200, 201):
            order_id = answer["order_id"]
            acked.append(command_for(method, path, body, order_id))
            if answer["is_active"] and order_id not in live:
                live.append(order_id)
            if not answer["is_active"] and order_id in live:
                live.remove(order_id)
        else:
            assert response.status in (404, 409), answer
    raise AssertionError("unreachable: the loop returns at kill_at")


def book_of(engine: Exchange) -> tuple[int, Any, Any]:
    bids, asks = engine.depth(DEFAULT_SYMBOL, 100)
    return (engine.seq(DEFAULT_SYMBOL), levels(bids, DEFAULT_INSTRUMENT),
            levels(asks, DEFAULT_INSTRUMENT))


@pytest.mark.parametrize("seed", [7, 11])
async def test_kill_9_mid_stream_loses_nothing_acknowledged(
        tmp_path: Path, redis_server: RedisServer, seed: int) -> None:
    rng = random.Random(seed)
    kill_at = rng.randint(COMMANDS // 2, COMMANDS - 1)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    acked: list[Command] = []
    with NatsServer(tmp_path / "nats").start() as nats_server:
        service = start_service(nats_server.url, redis_server.url, port, tmp_path / "svc.log")
        try:
            async with aiohttp.ClientSession() as http:
                await eventually(lambda: until_ready(http, base), timeout=20)
                in_flight = await send_until_killed(http, base, service, rng, kill_at, acked)
                service = start_service(nats_server.url, redis_server.url, port,
                                        tmp_path / "svc.log")
                await eventually(lambda: until_ready(http, base), timeout=20)
            connection = await nats.connect(nats_server.url)
            reply = await connection.request(subjects.BOOK_REQUEST, DEFAULT_SYMBOL.encode(),
                                             timeout=5)
            await connection.close()
        finally:
            service.send_signal(signal.SIGTERM)
            service.wait(timeout=10)
    restored = msgspec.json.decode(reply.data, type=BookMessage)
    seen = (restored.seq, restored.bids, restored.asks)
    expected = Exchange(INSTRUMENTS)
    for command in acked:
        expected.submit(command)
    candidates = [book_of(expected)]
    expected.submit(in_flight)
    candidates.append(book_of(expected))
    assert seen in candidates, (seen[0], [c[0] for c in candidates])
