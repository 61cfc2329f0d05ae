"""Market data out of svc_orders: md.trades, conflated md.book, Redis caches, book requests."""

import asyncio
import json
from typing import Any

import msgspec
import nats
import redis.asyncio as redis
from aiohttp.test_utils import TestClient, TestServer

from common import cache, subjects
from common.config import Settings
from ops.stack import free_port
from svc_orders.app import create_app
from tests.helpers import AppClient, eventually


async def test_trades_books_and_caches(orders: AppClient, settings: Settings) -> None:
    connection = await nats.connect(settings.nats_url)
    received: dict[str, list[dict[str, Any]]] = {"trades": [], "book": []}

    async def collect(msg: Any) -> None:
        kind = "trades" if msg.subject.startswith("md.trades") else "book"
        received[kind].append(json.loads(msg.data))

    await connection.subscribe(subjects.trades("DEFAULT"), cb=collect)
    await connection.subscribe(subjects.book("DEFAULT"), cb=collect)
    cached = redis.Redis.from_url(settings.redis_url)
    try:
        await cached.delete(cache.trades_key("DEFAULT"), cache.book_key("DEFAULT"))
        await orders.post("/orders/", json={"side": "sell", "quantity": 5, "price": "10.00"})
        await orders.post("/orders/", json={"side": "sell", "quantity": 5, "price": "10.01"})
        response = await orders.post("/orders/", json={"side": "buy", "quantity": 7,
                                                       "price": "10.01"})
        placed = await response.json()

        [update] = await eventually(lambda: received["trades"])
        assert (update["type"], update["channel"], update["symbol"]) == (
            "update", "trades", "DEFAULT")
        assert update["seq"] == placed["seq"]
        assert update["trades"] == placed["fills"]

        def settled_book() -> dict[str, Any]:
            books = [b for b in received["book"] if b["seq"] == placed["seq"]]
            return books[-1] if books else {}

        book = await eventually(settled_book)
        assert (book["type"], book["channel"]) == ("update", "orderbook")
        assert book["bids"] == []
        assert book["asks"] == [{"price": "10.01", "quantity": 3, "orders": 1}]

        async def cached_trades() -> list[Any]:
            return [json.loads(t) for t in await cached.lrange(cache.trades_key("DEFAULT"), 0, -1)]

        async def cached_book() -> Any:
            raw = await cached.get(cache.book_key("DEFAULT"))
            return json.loads(raw) if raw else None

        assert await eventually(cached_trades) == placed["fills"][::-1]  # newest first
        snapshot = await eventually(cached_book)
        assert (snapshot["type"], snapshot["asks"]) == ("snapshot", book["asks"])

        reply = await connection.request(subjects.BOOK_REQUEST, b"DEFAULT", timeout=2)
        assert json.loads(reply.data)["asks"] == book["asks"]
        reply = await connection.request(subjects.BOOK_REQUEST, b"NOPE", timeout=2)
        assert "error" in json.loads(reply.data)

        heartbeat_from = len(received["book"])
        await asyncio.sleep(settings.book_heartbeat * 1.5)
        assert len(received["book"]) > heartbeat_from  # published at least once a second
    finally:
        await cached.aclose()
        await connection.close()


async def test_redis_down_slows_nothing(settings: Settings) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    without_redis = msgspec.structs.replace(settings, redis_url=nowhere)
    client = TestClient(TestServer(create_app(without_redis)))
    await client.start_server()
    connection = await nats.connect(settings.nats_url)
    updates: list[bytes] = []

    async def collect(msg: Any) -> None:
        updates.append(msg.data)

    await connection.subscribe(subjects.trades("DEFAULT"), cb=collect)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for side in ("sell", "buy") * 5:
            response = await client.post("/orders/", json={"side": side, "quantity": 1,
                                                           "price": "3.00"})
            assert response.status == 201
        assert loop.time() - started < 2.0
        assert len(await eventually(lambda: updates if len(updates) == 5 else [])) == 5
    finally:
        await connection.close()
        await client.close()
