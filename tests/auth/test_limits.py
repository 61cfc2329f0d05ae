"""Rate limits on the real services with auth on: per key on private routes, per address
on public ones, the RateLimit-* headers on every answer, 429 RATE_LIMITED with
Retry-After, and counting in memory while Redis is down."""

import msgspec
from nats.js.kv import KeyValue

from common import keys
from common.config import Settings
from common.keys import SecretBox
from ops.stack import free_port
from svc_orders.app import create_app as create_orders_app
from svc_trades.app import create_app as create_trades_app
from tests.auth.conftest import Exchange, MakeClient, answer, url
from tests.common.auth import SECRET_KEY
from tests.signing import signing_session


async def test_a_key_over_its_limit_gets_429_with_retry_after(
        settings: Settings, kv: KeyValue, aiohttp_client: MakeClient) -> None:
    limited = msgspec.structs.replace(settings, rate_private="3/minute")
    box = SecretBox(SECRET_KEY)
    # Keys before the service: it loads the bucket at start, a later key arrives by watch.
    first = await keys.create_key(kv, box, "trader")
    second = await keys.create_key(kv, box, "trader")
    orders = await aiohttp_client(create_orders_app(limited))
    # Bodies differ: two alike signed in the same millisecond would be one signature.
    body = {"side": "buy", "quantity": 1, "price": "10.00"}
    async with signing_session(first.key_id, first.secret, url(orders)) as session:
        remaining = []
        for quantity in range(2, 5):
            async with session.post("/orders/", json=body | {"quantity": quantity}) as response:
                assert response.status == 201
                assert response.headers["RateLimit-Limit"] == "3"
                assert int(response.headers["RateLimit-Reset"]) <= 60
                remaining.append(int(response.headers["RateLimit-Remaining"]))
        assert remaining == [2, 1, 0]
        async with session.post("/orders/", json=body) as response:
            refused = await response.json()
            assert (response.status, refused["error"]["code"]) == (429, "RATE_LIMITED")
            assert 1 <= int(response.headers["Retry-After"]) <= 60
        status, _ = await answer(await session.get("/orders/"))  # every route of the key
        assert status == 429
    async with signing_session(second.key_id, second.secret, url(orders)) as session:
        status, _ = await answer(await session.post("/orders/", json=body))
        assert status == 201  # a limit per key


async def test_public_routes_are_limited_per_address(
        settings: Settings, aiohttp_client: MakeClient) -> None:
    limited = msgspec.structs.replace(settings, rate_public="2/minute")
    trades = await aiohttp_client(create_trades_app(limited))
    statuses = []
    for _ in range(3):
        async with trades.get("/trades/public/") as response:
            statuses.append(response.status)
            assert "RateLimit-Remaining" in response.headers
    assert statuses == [200, 200, 429]
    async with trades.get("/ready/") as response:  # probes are never counted
        assert "RateLimit-Remaining" not in response.headers


async def test_limits_are_counted_in_memory_while_redis_is_down(
        settings: Settings, kv: KeyValue, aiohttp_client: MakeClient) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    down = msgspec.structs.replace(settings, redis_url=nowhere, rate_private="2/minute")
    key = await keys.create_key(kv, SecretBox(SECRET_KEY), "trader")
    orders = await aiohttp_client(create_orders_app(down))
    async with signing_session(key.key_id, key.secret, url(orders)) as session:
        statuses = []
        for quantity in range(1, 4):
            async with session.post("/orders/", json={"side": "sell", "quantity": quantity,
                                                      "price": "10.00"}) as response:
                statuses.append(response.status)
                assert response.headers["RateLimit-Limit"] == "2"
    assert statuses == [201, 201, 429]


async def test_a_body_too_large_to_check_is_counted_against_the_address(
        exchange: Exchange) -> None:
    """A request refused before its signature could be checked still carries the
    address's RateLimit-* headers, as every answer does."""
    async with exchange.orders.post("/orders/", data=b"x" * (70 * 1024), headers={
            "EX-ACCESS-KEY": exchange.alice.key.key_id, "EX-ACCESS-TIMESTAMP": "1",
            "EX-ACCESS-SIGN": "0" * 64}) as response:
        assert response.status == 413
        assert response.headers["RateLimit-Limit"] == "1000"
