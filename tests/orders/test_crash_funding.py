"""Funding on, kill -9 mid-stream: after the restart every balance equals a reference
engine fed the acknowledged commands (or those plus the one in flight at the kill)."""

import random
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from common.assets import BASE_UNIT, format_amount
from common.messages import Command, TransferFunds
from ops.stack import NatsServer, RedisServer, free_port
from svc_orders.matching import Exchange
from tests.helpers import eventually
from tests.orders.test_crash import (
    INSTRUMENTS,
    USERS,
    send_until_killed,
    start_service,
    until_ready,
)

COMMANDS = 400
OPENING = {"USD": 30_000, "DEFAULT": 300}  # enough for most orders, not for all


def opening() -> list[TransferFunds]:
    return [TransferFunds(transfer_id=f"open-{user}-{asset}", user_id=user, asset=asset,
                          amount=whole * BASE_UNIT)
            for user in USERS for asset, whole in OPENING.items()]


async def balances(http: aiohttp.ClientSession, base: str) -> dict[tuple[str, str], Any]:
    """Every user's balance of both assets, as a repeated opening deposit answers it."""
    found = {}
    for transfer in opening():
        async with http.post(f"{base}/accounts/{transfer.user_id}/deposits/", json={
                "asset": transfer.asset, "amount": str(transfer.amount // BASE_UNIT),
                "transfer_id": transfer.transfer_id}) as response:
            assert response.status == 200, await response.text()
            answer = await response.json()
        found[(transfer.user_id, transfer.asset)] = answer["balance"]
    return found


def expected(engine: Exchange) -> dict[tuple[str, str], Any]:
    assert engine.funds is not None
    found = {}
    for transfer in opening():
        key = (transfer.user_id, transfer.asset)
        available, held = engine.funds.balances.get(key, [0, 0])
        found[key] = {"asset": transfer.asset, "available": format_amount(available),
                      "held": format_amount(held)}
    return found


async def test_kill_9_with_funding_rebuilds_every_balance(
        tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EX_FUNDING", "on")
    rng = random.Random(5)
    kill_at = rng.randint(COMMANDS // 2, COMMANDS - 1)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    acked: list[Command] = [*opening()]
    with NatsServer(tmp_path / "nats").start() as nats_server:
        service = start_service(nats_server.url, redis_server.url, port, tmp_path / "svc.log")
        try:
            async with aiohttp.ClientSession() as http:
                await eventually(lambda: until_ready(http, base), timeout=20)
                for transfer in opening():
                    async with http.post(f"{base}/accounts/{transfer.user_id}/deposits/", json={
                            "asset": transfer.asset,
                            "amount": str(transfer.amount // BASE_UNIT),
                            "transfer_id": transfer.transfer_id}) as response:
                        assert response.status == 201, await response.text()
                in_flight = await send_until_killed(http, base, service, rng, kill_at, acked)
                service = start_service(nats_server.url, redis_server.url, port,
                                        tmp_path / "svc.log")
                await eventually(lambda: until_ready(http, base), timeout=20)
                seen = await balances(http, base)
        finally:
            service.send_signal(signal.SIGTERM)
            service.wait(timeout=10)
    reference = Exchange(INSTRUMENTS, funding=True)
    for command in acked:
        reference.submit(command)
    candidates = [expected(reference)]
    reference.submit(in_flight)
    candidates.append(expected(reference))
    assert seen in candidates
    assert any(held["held"] != "0.000000" for held in seen.values())  # orders were resting
