"""The private `orders` channel: signing in with `auth`, each user's own order updates
only, refusals with their codes, the failed-authentication limit, revocation, and public
trades without ids (real NATS, Redis and keys bucket; order updates published by hand)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import msgspec
import pytest
import redis.asyncio
from aiohttp import ClientWebSocketResponse
from nats.aio.client import Client as Nats
from nats.js.kv import KeyValue
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from common import cache, keys, subjects
from common.config import Settings
from common.views import (
    OrdersMessage,
    OrderView,
    PublicTradesMessage,
    PublicTradeView,
    json_encoder,
    public_trade,
)
from ops.stack import RedisServer
from tests.common.auth import SECRET_KEY
from tests.stream.auth import REDIS_DB, auth_message, issue, sign_in, subscribe_orders
from tests.stream.conftest import Client, MakeStream
from tests.stream.market import TIME, publish_trades, receive, trade

NOTHING = 0.3  # seconds a client waits to be sure nothing else arrives


@pytest.fixture
async def auth_settings(settings: Settings, redis_server: RedisServer) -> Settings:
    url = redis_server.url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    async with redis.asyncio.from_url(url) as client:
        await client.flushdb()
    return msgspec.structs.replace(settings, auth="on", secret_key=SECRET_KEY, redis_url=url,
                                   rate_auth_failures="6/minute")


@pytest.fixture
async def stream(make_stream: MakeStream, auth_settings: Settings) -> Client:
    return await make_stream(auth="on", secret_key=SECRET_KEY,
                             redis_url=auth_settings.redis_url,
                             rate_auth_failures=auth_settings.rate_auth_failures)


@pytest.fixture
async def kv(nc: Nats) -> KeyValue:
    return await keys.bucket(nc.jetstream())


@pytest.fixture
async def auth_redis(auth_settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(auth_settings.redis_url)
    yield client
    await client.aclose()


def orders_message(symbol: str, seq: int, order_id: str) -> OrdersMessage:
    """What svc_orders publishes for one user after a command that placed `order_id`."""
    order = OrderView(
        order_id=order_id, client_order_id=None, symbol=symbol, side="buy", type="limit",
        time_in_force="GTC", post_only=False, stp="none", quantity=1, price="1.00",
        remaining_quantity=1, traded_quantity=0, cancelled_quantity=0,
        average_traded_price=None, status="ACTIVE", is_active=True, cancel_reason=None,
        reject_reason=None, user_id=None, created_at=TIME, updated_at=TIME, seq=seq)
    return OrdersMessage(symbol=symbol, seq=seq, orders=[order], fills=[])


async def publish_orders(nc: Nats, user_id: str, message: OrdersMessage) -> None:
    await nc.publish(subjects.user_orders(user_id), json_encoder.encode(message))
    await nc.flush()


async def nothing_more(ws: ClientWebSocketResponse) -> None:
    """No frame is waiting: a ping's pong comes next."""
    await asyncio.sleep(NOTHING)
    await ws.send_json({"type": "ping"})
    assert await receive(ws) == {"type": "pong"}


async def test_each_signed_in_client_gets_its_own_orders_and_nobody_elses(
        stream: Client, nc: Nats, kv: KeyValue, symbols: list[str]) -> None:
    alice, bob = await issue(kv, "trader"), await issue(kv, "viewer")
    first, second = symbols[:2]
    alice_ws, bob_ws = await stream.ws_connect("/ws/"), await stream.ws_connect("/ws/")
    assert await sign_in(alice_ws, alice) == {"type": "authenticated",
                                              "user_id": alice.user_id, "role": "trader"}
    assert (await sign_in(bob_ws, bob))["user_id"] == bob.user_id
    await subscribe_orders(alice_ws, [first])
    await subscribe_orders(bob_ws, [first, second])

    await publish_orders(nc, alice.user_id, orders_message(first, 1, "alice-1"))
    await publish_orders(nc, bob.user_id, orders_message(first, 2, "bob-1"))
    await publish_orders(nc, alice.user_id, orders_message(second, 1, "alice-2"))
    await publish_orders(nc, bob.user_id, orders_message(second, 3, "bob-2"))

    got = await receive(alice_ws)
    assert (got["type"], got["channel"], got["symbol"]) == ("update", "orders", first)
    assert [order["order_id"] for order in got["orders"]] == ["alice-1"]
    assert [(await receive(bob_ws))["orders"][0]["order_id"] for _ in range(2)] == [
        "bob-1", "bob-2"]
    await nothing_more(alice_ws)  # not its second symbol, and never bob's
    await nothing_more(bob_ws)


async def test_the_orders_channel_before_auth_is_an_error_and_delivers_nothing(
        stream: Client, nc: Nats, kv: KeyValue, symbols: list[str]) -> None:
    owner = await issue(kv)
    witness, stranger = await stream.ws_connect("/ws/"), await stream.ws_connect("/ws/")
    await sign_in(witness, owner)
    await subscribe_orders(witness, symbols[:1])
    await stranger.send_json({"type": "subscribe", "channels": ["orders", "trades"],
                              "symbols": symbols[:1]})
    refusal = await receive(stranger)
    assert (refusal["type"], refusal["code"]) == ("error", "AUTH_REQUIRED")
    wrong = auth_message(owner)
    wrong["signature"] = "0" * 64
    await stranger.send_json(wrong)
    assert (await receive(stranger))["code"] == "INVALID_SIGNATURE"
    await stranger.send_json({"type": "subscribe", "channels": ["orders"],
                              "symbols": symbols[:1]})
    assert (await receive(stranger))["code"] == "AUTH_REQUIRED"

    await publish_orders(nc, owner.user_id, orders_message(symbols[0], 1, "o-1"))
    assert (await receive(witness))["orders"][0]["order_id"] == "o-1"
    await nothing_more(stranger)


async def test_refusals_name_their_code_and_a_burst_of_failures_is_refused_unread(
        stream: Client, kv: KeyValue) -> None:
    key = await issue(kv)
    ws = await stream.ws_connect("/ws/")
    stale = str(time.time_ns() // 1_000_000 - 60_000)
    unknown = msgspec.structs.replace(key, key_id="00000000-0000-4000-8000-000000000000")
    accepted = auth_message(key)
    attempts: list[tuple[object, str]] = [
        ({"type": "auth"}, "AUTH_REQUIRED"),
        ({**auth_message(key), "signature": "f" * 64}, "INVALID_SIGNATURE"),
        (auth_message(unknown), "INVALID_SIGNATURE"),
        (auth_message(key, stale), "TIMESTAMP_OUT_OF_WINDOW"),
        ({**auth_message(key), "key": "not-a-key"}, "INVALID_KEY"),
    ]
    for message, code in attempts:
        await ws.send_json(message)
        answer = await receive(ws)
        assert (answer["type"], answer["code"]) == ("error", code), message
        assert key.secret not in answer["message"]
    await ws.send_json(accepted)
    assert (await receive(ws))["type"] == "authenticated"
    await ws.send_json(accepted)  # the same signature again
    assert (await receive(ws))["code"] == "REPLAYED_REQUEST"  # the 6th failure

    await ws.send_json(auth_message(key))  # valid, but the address spent its failures
    answer = await receive(ws)
    assert (answer["type"], answer["code"]) == ("error", "RATE_LIMITED")


async def test_a_revoked_key_loses_its_orders_within_a_second(
        stream: Client, nc: Nats, kv: KeyValue, symbols: list[str]) -> None:
    revoked = await issue(kv)
    kept = await issue(kv, user_id=revoked.user_id)  # the same user's other key
    ws, witness = await stream.ws_connect("/ws/"), await stream.ws_connect("/ws/")
    for client, key in ((ws, revoked), (witness, kept)):
        await sign_in(client, key)
        await subscribe_orders(client, symbols[:1])

    started = time.monotonic()
    await keys.revoke_key(kv, revoked.key_id)
    notice = await receive(ws)
    assert time.monotonic() - started < 1.0
    assert (notice["type"], notice["code"]) == ("error", "KEY_REVOKED")

    await publish_orders(nc, revoked.user_id, orders_message(symbols[0], 1, "o-1"))
    assert (await receive(witness))["orders"][0]["order_id"] == "o-1"
    await nothing_more(ws)
    await ws.send_json({"type": "subscribe", "channels": ["orders"], "symbols": symbols[:1]})
    assert (await receive(ws))["code"] == "AUTH_REQUIRED"
    await ws.send_json(auth_message(revoked))
    assert (await receive(ws))["code"] == "INVALID_SIGNATURE"


async def test_with_auth_off_there_is_no_private_channel(make_stream: MakeStream,
                                                         kv: KeyValue) -> None:
    stream = await make_stream()
    ws = await stream.ws_connect("/ws/")
    await ws.send_json(auth_message(await issue(kv)))
    assert (await receive(ws))["code"] == "AUTH_DISABLED"
    await ws.send_json({"type": "subscribe", "channels": ["orders"]})
    assert (await receive(ws))["code"] == "AUTH_REQUIRED"


async def test_with_auth_on_trades_carrying_ids_never_reach_a_client(
        stream: Client, nc: Nats, auth_redis: Redis, symbols: list[str]) -> None:
    symbol = symbols[0]
    full = trade(symbol, 1, 1)
    await auth_redis.lpush(cache.trades_key(symbol), json_encoder.encode(full))
    ws = await stream.ws_connect(f"/ws/trades/?symbol={symbol}")
    assert (await receive(ws))["trades"] == []  # the cached trade with ids is dropped
    bad = REGISTRY.get_sample_value("stream_bad_payloads_total", {"channel": "trades"}) or 0.0

    await publish_trades(nc, symbol, 2, [trade(symbol, 2, 2)])
    public = PublicTradesMessage(type="update", symbol=symbol, seq=3,
                                 trades=[public_trade(trade(symbol, 3, 3))])
    await nc.publish(subjects.trades(symbol), json_encoder.encode(public))
    update = await receive(ws)
    assert update["seq"] == 3
    assert set(update["trades"][0]) == set(PublicTradeView.__struct_fields__)
    assert REGISTRY.get_sample_value("stream_bad_payloads_total",
                                     {"channel": "trades"}) == bad + 1


async def test_signing_in_as_another_user_ends_the_first_users_orders(
        stream: Client, nc: Nats, kv: KeyValue, symbols: list[str]) -> None:
    first, second = await issue(kv), await issue(kv)
    ws, witness = await stream.ws_connect("/ws/"), await stream.ws_connect("/ws/")
    await sign_in(witness, first)
    await subscribe_orders(witness, symbols[:1])
    await sign_in(ws, first)
    await subscribe_orders(ws, symbols[:1])
    assert (await sign_in(ws, second))["user_id"] == second.user_id

    await publish_orders(nc, first.user_id, orders_message(symbols[0], 1, "first-1"))
    assert (await receive(witness))["orders"][0]["order_id"] == "first-1"
    await nothing_more(ws)
