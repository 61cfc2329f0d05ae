"""Two svc_orders processes started at the same moment on one JetStream end with exactly
one leader; the other is a standby that says where the leader is."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ops.stack import NatsServer, RedisServer, free_port
from tests.helpers import eventually
from tests.orders.test_crash import start_service

pytestmark = pytest.mark.integration


async def _states(http: aiohttp.ClientSession, bases: list[str]) -> list[int]:
    async def status(base: str) -> int:
        try:
            async with http.get(f"{base}/ready/") as response:
                return response.status
        except aiohttp.ClientError:
            return 0
    return list(await asyncio.gather(*(status(base) for base in bases)))


async def test_two_instances_started_at_once_end_with_exactly_one_leader(
        tmp_path: Path, private_nats: NatsServer, redis_server: RedisServer) -> None:
    ports = [free_port(), free_port()]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    services = [start_service(private_nats.url, redis_server.url, port,
                              tmp_path / f"svc-{port}.log") for port in ports]
    try:
        async with aiohttp.ClientSession() as http:
            async def settled() -> list[int]:
                states = await _states(http, bases)
                assert sorted(states) == [200, 503], states
                return states
            states = await eventually(settled, timeout=20, interval=0.1)
            await asyncio.sleep(1.0)  # a few lease renewals later, still one leader
            assert await _states(http, bases) == states
            leader, standby = (bases if states[0] == 200 else bases[::-1])
            async with http.post(f"{standby}/orders/", json={
                    "side": "buy", "price": "100", "quantity": 1}) as response:
                answer: dict[str, Any] = await response.json()
            assert response.status == 503
            assert answer["error"]["code"] == "NOT_LEADER"
            assert answer["error"]["details"] == {"leader": leader}
            async with http.post(f"{leader}/orders/", json={
                    "side": "buy", "price": "100", "quantity": 1}) as response:
                assert response.status == 201
            async with http.get(f"{standby}/metrics") as response:
                text = await response.text()
            assert 'orders_role{role="standby"} 1.0' in text
            assert 'orders_role{role="leader"} 0.0' in text
    finally:
        for service in services:
            service.send_signal(signal.SIGTERM)
        for service in services:
            service.wait(timeout=10)
