"""Two users trade against each other under load, each watching its own `orders` channel:
svc_orders and svc_stream with auth on, on real NATS (JetStream), Redis and keys bucket.

Each receives exactly its own order updates and fills, complete, and nothing of the
other's; a wrongly signed client gets nothing private; the public trades channel names
no user and no order.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import nats
import pytest
import redis.asyncio
from aiohttp import ClientWebSocketResponse, WSMsgType, web
from aiohttp.test_utils import TestClient

from common import keys
from common.config import Settings
from common.keys import IssuedKey
from ops.stack import NatsServer, RedisServer
from svc_orders.app import create_app as create_orders
from svc_stream.app import create_app as create_stream
from tests.common.auth import SECRET_KEY
from tests.helpers import eventually
from tests.signing import signed_headers
from tests.stream.auth import REDIS_DB, auth_message, sign_in, subscribe_orders
from tests.stream.market import receive

App = TestClient[web.Request, web.Application]
MakeApp = Callable[..., Awaitable[App]]

ORDERS_EACH = 150
CONCURRENCY = 16  # commands in flight per user
PRIVATE_FIELDS = ("bid_order_id", "ask_order_id", "buyer_user_id", "seller_user_id")


@pytest.fixture
async def settings(private_nats: NatsServer, redis_server: RedisServer) -> Settings:
    url = redis_server.url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    async with redis.asyncio.from_url(url) as client:
        await client.flushdb()
    return Settings(auth="on", secret_key=SECRET_KEY, nats_url=private_nats.url,
                    redis_url=url, journal_timeout=2.0, rate_private="100000/second",
                    rate_public="100000/second")


@pytest.fixture
async def users(settings: Settings) -> AsyncIterator[tuple[IssuedKey, IssuedKey]]:
    connection = await nats.connect(settings.nats_url)
    bucket = await keys.bucket(connection.jetstream())
    box = keys.SecretBox(SECRET_KEY)
    yield (await keys.create_key(bucket, box, "trader"),
           await keys.create_key(bucket, box, "trader"))
    await connection.close()


class Listener:
    """Every text frame a connection gets, as it arrives."""

    def __init__(self, ws: ClientWebSocketResponse) -> None:
        self.ws = ws
        self.raw: list[str] = []
        self.messages: list[Any] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type is WSMsgType.TEXT:
                self.raw.append(frame.data)
                self.messages.append(msgspec.json.decode(frame.data))

    def updates(self, channel: str) -> list[Any]:
        return [m for m in self.messages if m.get("channel") == channel]

    async def close(self) -> None:
        await self.ws.close()
        await self._task


async def trade_as(orders: App, key: IssuedKey, side: str) -> list[Any]:
    """ORDERS_EACH limit orders of `side` at one price, CONCURRENCY at a time, signed."""
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def place(i: int) -> Any:
        body = msgspec.json.encode({"side": side, "quantity": 1 + i % 3, "price": "10.00",
                                    "user_id": key.user_id,
                                    "client_order_id": f"{side}-{i}-{uuid.uuid4()}"})
        async with semaphore:
            response = await orders.post("/orders/", data=body, headers={
                "Content-Type": "application/json",
                **signed_headers(key.key_id, key.secret, "POST", "/orders/", body)})
            assert response.status == 201, await response.text()
            return await response.json()

    return await asyncio.gather(*(place(i) for i in range(ORDERS_EACH)))


async def test_two_users_trading_each_see_only_their_own_orders_and_fills(
        settings: Settings, users: tuple[IssuedKey, IssuedKey],
        aiohttp_client: MakeApp) -> None:
    alice, bob = users
    orders = await aiohttp_client(create_orders(settings))
    stream = await aiohttp_client(create_stream(settings))
    listeners: dict[str, Listener] = {}
    for name, key in (("alice", alice), ("bob", bob)):
        ws = await stream.ws_connect("/ws/")
        assert (await sign_in(ws, key))["type"] == "authenticated"
        await subscribe_orders(ws, ["DEFAULT"])
        listeners[name] = Listener(ws)
    intruder = await stream.ws_connect("/ws/")
    forged = {**auth_message(alice), "signature": "0" * 64}
    await intruder.send_json(forged)
    assert (await receive(intruder))["code"] == "INVALID_SIGNATURE"
    await intruder.send_json({"type": "subscribe", "channels": ["orders"]})
    assert (await receive(intruder))["code"] == "AUTH_REQUIRED"
    listeners["intruder"] = Listener(intruder)
    public = await stream.ws_connect("/ws/trades/?symbol=DEFAULT")
    assert (await receive(public))["type"] == "snapshot"
    listeners["public"] = Listener(public)

    sells, buys = await asyncio.gather(trade_as(orders, alice, "sell"),
                                       trade_as(orders, bob, "buy"))
    placed = {"alice": {o["order_id"] for o in sells}, "bob": {o["order_id"] for o in buys}}
    user_of = {"alice": alice.user_id, "bob": bob.user_id}

    def traded() -> int:
        return sum(t["quantity"] for m in listeners["public"].updates("trades")
                   for t in m["trades"])

    def filled(name: str) -> int:
        return sum(f["quantity"] for m in listeners[name].updates("orders") for f in m["fills"])

    total = sum(o["quantity"] for o in sells)
    await eventually(lambda: traded() == total == filled("alice") == filled("bob"),
                     timeout=20)

    for name, other in (("alice", "bob"), ("bob", "alice")):
        messages = listeners[name].updates("orders")
        assert len(messages) == len(listeners[name].messages)  # nothing else arrived
        views = [view for m in messages for view in m["orders"]]
        assert {view["user_id"] for view in views} == {user_of[name]}
        assert {view["order_id"] for view in views} == placed[name]
        assert {f["order_id"] for m in messages for f in m["fills"]} <= placed[name]
        text = "".join(listeners[name].raw)
        assert user_of[other] not in text
        assert not any(order_id in text for order_id in placed[other])
        latest: dict[str, Any] = {}
        for view in sorted(views, key=lambda view: view["seq"]):
            latest[view["order_id"]] = view
        assert {view["status"] for view in latest.values()} == {"FILLED"}
    assert listeners["intruder"].messages == []
    public_text = "".join(listeners["public"].raw)
    for trade in (t for m in listeners["public"].updates("trades") for t in m["trades"]):
        assert not set(PRIVATE_FIELDS) & set(trade)
    assert alice.user_id not in public_text
    assert bob.user_id not in public_text
    assert not any(order_id in public_text for ids in placed.values() for order_id in ids)
    for listener in listeners.values():
        await listener.close()
