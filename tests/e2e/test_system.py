"""End to end, as a user runs it: `ops.launcher` starts real servers and the three
services as processes; the original system's README examples 1 to 9 run against them,
a WebSocket client sees the trade and the book change, and every service is killed with
SIGKILL in the middle without losing anything. Every REST answer is checked against the
answering service's own /openapi.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import eventually
from tests.openapi_check import check_answer
from tests.system import SERVICES, Launcher, ready, run_launcher

pytestmark = pytest.mark.integration

USER = "123e4567-e89b-12d3-a456-426614174000"
BUYER = "123e4567-e89b-12d3-a456-426614174001"


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[Launcher]:
    async for running in run_launcher(tmp_path):
        await eventually(partial(running.said, "all services ready"), timeout=40)
        yield running


class Api:
    """REST calls to the running services; each answer validated against its OpenAPI."""

    def __init__(self, http: aiohttp.ClientSession, ports: dict[str, int]) -> None:
        self.http = http
        self.base = {"orders": f"http://127.0.0.1:{ports['EX_ORDERS_PORT']}",
                     "trades": f"http://127.0.0.1:{ports['EX_TRADES_PORT']}"}
        self.specs: dict[str, Any] = {}

    async def call(self, service: str, method: str, path: str, template: str,
                   body: Any = None) -> tuple[int, Any]:
        if service not in self.specs:
            async with self.http.get(self.base[service] + "/openapi.json") as response:
                self.specs[service] = await response.json()
        async with self.http.request(method, self.base[service] + path, json=body) as response:
            answer = await response.json()
        check_answer(self.specs[service], method, template, response.status, answer)
        return response.status, answer


async def next_message(ws: aiohttp.ClientWebSocketResponse, accept: Any) -> dict[str, Any]:
    """The next message `accept` likes (books repeat every second; skip what is stale)."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.receive_str(), 5))
        if accept(message):
            return dict(message)


async def test_original_examples_websockets_and_restarts(system: Launcher) -> None:
    ports = system.ports
    stream = f"ws://127.0.0.1:{ports['EX_STREAM_PORT']}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        api = Api(http, ports)
        trades_ws = await http.ws_connect(f"{stream}/ws/trades/")
        book_ws = await http.ws_connect(f"{stream}/ws/orderbook/")
        snapshot = await next_message(trades_ws, lambda m: True)
        assert (snapshot["type"], snapshot["trades"]) == ("snapshot", [])
        await next_message(book_ws, lambda m: m["type"] == "snapshot")

        # 1. place a buy order
        status, buy = await api.call("orders", "POST", "/orders/", "/orders/", {
            "side": "buy", "quantity": 100, "price": 150.25, "user_id": USER})
        assert (status, buy["status"]) == (201, "ACTIVE")
        book = await next_message(book_ws, lambda m: m["bids"])
        assert book["bids"][0] == {"price": "150.25", "quantity": 100, "orders": 1}

        # 2. place a sell order that trades with it
        status, sell = await api.call("orders", "POST", "/orders/", "/orders/", {
            "side": "sell", "quantity": 50, "price": 150.20, "user_id": BUYER})
        assert (status, sell["status"], len(sell["fills"])) == (201, "FILLED", 1)
        [trade] = sell["fills"]
        update = await next_message(trades_ws, lambda m: m["type"] == "update")
        assert update["trades"] == [trade]  # the original clients read message["trades"]
        book = await next_message(book_ws, lambda m: m["bids"] and m["bids"][0]["quantity"] == 50)
        assert book["asks"] == []

        # 3. get order details
        order_path = f"/orders/{buy['order_id']}/"
        status, got = await api.call("orders", "GET", order_path, "/orders/{order_id}/")
        assert (status, got["status"], got["remaining_quantity"]) == (
            200, "PARTIALLY_FILLED", 50)

        # 4. modify its price
        status, moved = await api.call("orders", "PUT", order_path, "/orders/{order_id}/",
                                       {"price": 150.30})
        assert (status, moved["price"]) == (200, "150.30")

        # 5. cancel another order
        status, extra = await api.call("orders", "POST", "/orders/", "/orders/", {
            "side": "sell", "quantity": 10, "price": 151.00, "user_id": USER})
        status, cancelled = await api.call("orders", "DELETE", f"/orders/{extra['order_id']}/",
                                           "/orders/{order_id}/")
        assert (status, cancelled["status"]) == (200, "CANCELLED")

        # 6. list orders with filters and pages (the projection may lag a moment)
        async def active_buys() -> Any:
            _, listing = await api.call("orders", "GET", "/orders/?status=ACTIVE&side=buy",
                                        "/orders/")
            _, partial = await api.call("orders", "GET",
                                        "/orders/?status=PARTIALLY_FILLED&side=buy",
                                        "/orders/")
            return [o["order_id"] for o in listing["orders"] + partial["orders"]]

        assert await eventually(active_buys, timeout=10) == [buy["order_id"]]
        _, mine = await api.call("orders", "GET", f"/orders/?user_id={USER}", "/orders/")
        assert {o["order_id"] for o in mine["orders"]} == {buy["order_id"], extra["order_id"]}
        _, page = await api.call("orders", "GET", "/orders/?page=1&page_size=10", "/orders/")
        assert page["pagination"]["total_count"] == 3

        # 7. order book snapshots
        status, top = await api.call("trades", "GET", "/orderbook/", "/orderbook/")
        assert (status, top["depth"]) == (200, 5)
        status, deep = await api.call("trades", "GET", "/orderbook/?depth=10", "/orderbook/")
        assert (status, deep["depth"]) == (200, 10)

        async def book_bid() -> Any:
            _, snap = await api.call("trades", "GET", "/orderbook/", "/orderbook/")
            return snap["bids"] == [{"price": "150.30", "quantity": 50, "orders": 1}]

        await eventually(book_bid, timeout=5)

        # 8. trade history
        async def trades() -> Any:
            _, listing = await api.call("trades", "GET", "/trades/", "/trades/")
            return listing["trades"]

        assert [t["trade_id"] for t in await eventually(trades, timeout=10)] == [
            trade["trade_id"]]
        _, paged = await api.call("trades", "GET", "/trades/?page=1&page_size=20", "/trades/")
        assert paged["pagination"]["total_count"] == 1

        # 9. settle the trade, once
        settle = f"/trades/{trade['trade_id']}/settle/"
        status, settled = await api.call("trades", "POST", settle,
                                         "/trades/{trade_id}/settle/")
        assert (status, settled["trade"]["is_settled"]) == (200, True)
        status, again = await api.call("trades", "POST", settle, "/trades/{trade_id}/settle/")
        assert (status, again["error"]["code"]) == (409, "TRADE_ALREADY_SETTLED")

        # Every service killed with SIGKILL in the middle: nothing is lost.
        for svc in SERVICES:
            [*_, pid] = system.pids_started(svc)
            os.kill(pid, signal.SIGKILL)
        restarted = lambda: all(len(system.pids_started(svc)) == 2 for svc in SERVICES)  # noqa: E731
        await eventually(restarted, timeout=15)
        for port in ("EX_ORDERS_PORT", "EX_TRADES_PORT", "EX_STREAM_PORT"):
            await eventually(partial(ready, http, ports[port]), timeout=30)

        status, after = await api.call("orders", "GET", order_path, "/orders/{order_id}/")
        assert (status, after["price"], after["remaining_quantity"]) == (200, "150.30", 50)
        status, kept = await api.call("trades", "GET", f"/trades/{trade['trade_id']}/",
                                      "/trades/{trade_id}/")
        assert (status, kept["is_settled"]) == (200, True)
        status, taker = await api.call("orders", "POST", "/orders/", "/orders/", {
            "side": "sell", "quantity": 50, "price": "150.30", "user_id": BUYER})
        assert (status, taker["status"], taker["fills"][0]["bid_order_id"]) == (
            201, "FILLED", buy["order_id"])
        await trades_ws.close()
        await book_ws.close()
