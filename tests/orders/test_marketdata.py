"""Market data out of svc_orders: md.trades, conflated md.book, Redis caches, book requests,
and with auth on public trades and each user's md.orders subject."""

import asyncio
import json
import uuid
from typing import Any

import msgspec
import nats
import redis.asyncio as redis
from aiohttp.test_utils import TestClient, TestServer

from common import cache, keys, subjects
from common.config import Settings
from common.instruments import load_instruments
from common.messages import (
    EventBatch,
    OrdersInterest,
    OrderType,
    Side,
    Stp,
    TimeInForce,
    TradeExecuted,
    encoder,
)
from common.orderstate import OrderState
from common.views import FillView, trade_view
from ops.stack import free_port
from svc_orders.app import create_app
from svc_orders.marketdata import user_messages
from tests.common.auth import SECRET_KEY
from tests.helpers import AppClient, eventually
from tests.orders.conftest import MakeClient
from tests.signing import signed_headers


async def test_trades_books_and_caches(orders: AppClient, settings: Settings) -> None:
    connection = await nats.connect(settings.nats_url)
    received: dict[str, list[dict[str, Any]]] = {"trades": [], "book": []}

    async def collect(msg: Any) -> None:
        kind = "trades" if msg.subject.startswith("md.trades") else "book"
        received[kind].append(json.loads(msg.data))

    await connection.subscribe(subjects.trades("DEFAULT"), cb=collect)
    await connection.subscribe(subjects.book("DEFAULT"), cb=collect)
    await connection.flush()  # subscribed before another link publishes
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
    await connection.flush()  # subscribed before another link publishes
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


async def signed_order(orders: AppClient, key: keys.IssuedKey, **order: object) -> Any:
    """Place an order signed with `key`, for the key's user."""
    body = msgspec.json.encode({**order, "user_id": key.user_id})
    response = await orders.post("/orders/", data=body, headers={
        "Content-Type": "application/json",
        **signed_headers(key.key_id, key.secret, "POST", "/orders/", body)})
    assert response.status == 201, await response.text()
    return await response.json()


async def announce(connection: Any, user_ids: list[str]) -> None:
    """What svc_stream says when these users have `orders` subscribers."""
    await connection.publish(subjects.ORDERS_INTEREST, encoder.encode(OrdersInterest(
        instance="test", user_ids=user_ids, ttl=5.0)))
    await connection.flush()
    await asyncio.sleep(0.1)  # svc_orders has read it


async def test_with_auth_on_trades_are_public_and_each_user_hears_of_its_own_orders(
        settings: Settings, aiohttp_client: MakeClient) -> None:
    connection = await nats.connect(settings.nats_url)
    bucket = await keys.bucket(connection.jetstream())
    box = keys.SecretBox(SECRET_KEY)
    seller_key = await keys.create_key(bucket, box, "trader")
    buyer_key = await keys.create_key(bucket, box, "trader")
    seller, buyer = seller_key.user_id, buyer_key.user_id
    orders = await aiohttp_client(create_app(msgspec.structs.replace(
        settings, auth="on", secret_key=SECRET_KEY)))
    public: list[dict[str, Any]] = []
    private: dict[str, list[dict[str, Any]]] = {}

    async def collect_public(msg: Any) -> None:
        public.append(json.loads(msg.data))

    async def collect_private(msg: Any) -> None:
        private.setdefault(msg.subject, []).append(json.loads(msg.data))

    await connection.subscribe(subjects.trades("DEFAULT"), cb=collect_public)
    await connection.subscribe(subjects.USER_ORDERS_WILDCARD, cb=collect_private)
    await connection.flush()  # subscribed before another link publishes
    cached = redis.Redis.from_url(settings.redis_url)
    try:
        await cached.delete(cache.trades_key("DEFAULT"))
        await signed_order(orders, seller_key, side="buy", quantity=1, price="1.00")
        await signed_order(orders, buyer_key, side="sell", quantity=1, price="50.00")
        await announce(connection, [seller, buyer, str(uuid.uuid4())])
        assert private == {}  # nobody watched them then: nothing was built
        sell = await signed_order(orders, seller_key, side="sell", quantity=5, price="10.00")
        buy = await signed_order(orders, buyer_key, side="buy", quantity=7, price="10.00")

        [update] = await eventually(lambda: public)
        [fill] = buy["fills"]
        assert update["trades"] == [{key: value for key, value in fill.items() if key not in {
            "bid_order_id", "ask_order_id", "buyer_user_id", "seller_user_id"}}]
        [raw] = await cached.lrange(cache.trades_key("DEFAULT"), 0, -1)
        assert json.loads(raw) == update["trades"][0]

        await eventually(lambda: len(private) == 2 and sum(map(len, private.values())) == 3)
        placed, traded = private[subjects.user_orders(seller)]
        assert (placed["seq"], placed["fills"]) == (sell["seq"], [])
        assert [o["status"] for o in placed["orders"]] == ["ACTIVE"]
        assert traded["seq"] == buy["seq"]
        assert [(o["order_id"], o["status"]) for o in traded["orders"]] == [
            (sell["order_id"], "FILLED")]
        assert [(f["order_id"], f["side"], f["liquidity"], f["quantity"])
                for f in traded["fills"]] == [(sell["order_id"], "sell", "maker", 5)]
        [bought] = private[subjects.user_orders(buyer)]
        assert [(o["order_id"], o["status"], o["remaining_quantity"])
                for o in bought["orders"]] == [(buy["order_id"], "PARTIALLY_FILLED", 2)]
        assert [(f["order_id"], f["side"], f["liquidity"]) for f in bought["fills"]] == [
            (buy["order_id"], "buy", "taker")]
        for message in (traded, bought):  # a fill names neither the other user nor order
            assert set(message["fills"][0]) == set(FillView.__struct_fields__)
    finally:
        await cached.aclose()
        await connection.close()


async def test_with_auth_off_nothing_goes_to_user_subjects(orders: AppClient,
                                                           settings: Settings) -> None:
    connection = await nats.connect(settings.nats_url)
    private: list[Any] = []
    trades: list[Any] = []

    async def collect(msg: Any) -> None:
        (private if msg.subject.startswith("md.orders") else trades).append(msg)

    await connection.subscribe(subjects.USER_ORDERS_WILDCARD, cb=collect)
    await connection.subscribe(subjects.trades("DEFAULT"), cb=collect)
    await connection.flush()  # subscribed before another link publishes
    try:
        user = str(uuid.uuid4())
        for side in ("sell", "buy"):
            await orders.post("/orders/", json={"side": side, "quantity": 1,
                                                "price": "2.00", "user_id": user})
        [update] = await eventually(lambda: trades)
        assert json.loads(update.data)["trades"][0]["buyer_user_id"] == user
        assert private == []
    finally:
        await connection.close()


def test_a_view_changed_by_a_later_command_waits_for_that_command() -> None:
    """The matcher runs ahead of the journal: an order a later command changed is left to
    that command's message, while the batch's fills go out with it."""
    instrument = load_instruments(None)["DEFAULT"]
    maker, taker = str(uuid.uuid4()), str(uuid.uuid4())
    states = {"m": OrderState(order_id="m", symbol="DEFAULT", side=Side.SELL,
                              type=OrderType.LIMIT, time_in_force=TimeInForce.GTC,
                              post_only=False, stp=Stp.NONE, user_id=maker,
                              client_order_id=None, price=100, quantity=5, remaining=3,
                              traded=2, seq=9),  # a later command (seq 9) traded it again
              "t": OrderState(order_id="t", symbol="DEFAULT", side=Side.BUY,
                              type=OrderType.LIMIT, time_in_force=TimeInForce.GTC,
                              post_only=False, stp=Stp.NONE, user_id=taker,
                              client_order_id=None, price=100, quantity=1, remaining=0,
                              traded=1, seq=8)}
    event = TradeExecuted(seq=8, timestamp=1, symbol="DEFAULT", trade_no=1, price=100,
                          quantity=1, buy_order_id="t", sell_order_id="m",
                          aggressor_side=Side.BUY, buyer_user_id=taker, seller_user_id=maker)
    batch = EventBatch(symbol="DEFAULT", seq=8, events=[event])
    messages = user_messages(batch, [trade_view(event, instrument)], states.get, instrument,
                             {maker, taker})
    assert [o.order_id for o in messages[taker].orders] == ["t"]
    assert messages[maker].orders == []
    assert [(f.order_id, f.liquidity) for f in messages[maker].fills] == [("m", "maker")]
