"""`GET /orderbook/`: svc_orders' Redis snapshot first, its NATS answer when Redis has none.

svc_orders is stood in for by what it writes (a Redis key) and by a tiny responder on
`ex.book.request`, so each source can be present, absent or broken at will.
"""

from collections.abc import AsyncIterator

import msgspec
import pytest
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from redis.asyncio import Redis

from common import cache, subjects
from common.config import Settings
from common.views import BookMessage, Level, json_encoder
from ops.stack import free_port
from svc_trades.app import create_app
from tests.helpers import AppClient, routed
from tests.trades.conftest import MakeClient

BOOK = BookMessage(
    type="snapshot", symbol="DEFAULT", seq=42, timestamp="2026-11-24T14:05:20.123456Z",
    bids=[Level(f"{150 - n}.25", 10 * (n + 1), n + 1) for n in range(8)],
    asks=[Level(f"{151 + n}.00", 5, 1) for n in range(3)])


def as_json(levels: list[Level]) -> list[dict[str, object]]:
    return [{"price": level.price, "quantity": level.quantity, "orders": level.orders}
            for level in levels]


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.delete(cache.book_key("DEFAULT"), cache.book_key("ALT"))
    await client.aclose()


async def respond_with(nc: Nats, answer: bytes) -> list[bytes]:
    """Stand in for svc_orders on `ex.book.request`; returns the requests it saw."""
    asked: list[bytes] = []

    async def reply(msg: Msg) -> None:
        asked.append(msg.data)
        await msg.respond(answer)
    await nc.subscribe(subjects.BOOK_REQUEST, cb=reply)
    await routed(nc, subjects.BOOK_REQUEST, b"PROBE")
    asked.clear()
    return asked


async def test_the_cached_book_at_the_asked_depth(trades: AppClient, redis: Redis) -> None:
    await redis.set(cache.book_key("DEFAULT"), json_encoder.encode(BOOK))
    response = await trades.get("/orderbook/")  # the original README's call: depth 5
    assert response.status == 200
    assert await response.json() == {
        "symbol": "DEFAULT", "seq": 42, "timestamp": BOOK.timestamp, "depth": 5,
        "bids": as_json(BOOK.bids[:5]), "asks": as_json(BOOK.asks)}
    deeper = await (await trades.get("/orderbook", params={"depth": "10"})).json()
    assert (deeper["depth"], deeper["bids"]) == (10, as_json(BOOK.bids))


async def test_without_a_cached_book_svc_orders_is_asked(trades: AppClient, redis: Redis,
                                                        nc: Nats) -> None:
    alt = BookMessage(type="snapshot", symbol="ALT", seq=7, timestamp=BOOK.timestamp,
                      bids=[Level("0.9975", 10, 1)], asks=[])
    asked = await respond_with(nc, json_encoder.encode(alt))
    body = await (await trades.get("/orderbook/", params={"symbol": "ALT",
                                                          "depth": 1})).json()
    assert body == {"symbol": "ALT", "seq": 7, "timestamp": BOOK.timestamp, "depth": 1,
                    "bids": as_json(alt.bids), "asks": []}
    assert asked == [b"ALT"]


async def test_a_refusal_or_no_answer_is_503(trades: AppClient, redis: Redis,
                                             nc: Nats) -> None:
    response = await trades.get("/orderbook/", params={"symbol": "ALT"})
    assert response.status == 503  # nobody answers the request
    assert (await response.json())["error"]["code"] == "UNAVAILABLE"
    await respond_with(nc, b'{"error": "unknown symbol \'ALT\'"}')
    response = await trades.get("/orderbook/", params={"symbol": "ALT"})
    body = await response.json()
    assert (response.status, body["error"]["details"]["reason"]) == (
        503, "unknown symbol 'ALT'")


async def test_redis_down_costs_nothing_but_a_request(
        settings: Settings, aiohttp_client: MakeClient, nc: Nats) -> None:
    down = msgspec.structs.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    asked = await respond_with(nc, json_encoder.encode(BOOK))
    trades = await aiohttp_client(create_app(down))
    response = await trades.get("/orderbook/")
    assert (response.status, (await response.json())["seq"]) == (200, 42)
    assert asked == [b"DEFAULT"]


@pytest.mark.parametrize(("query", "status", "code"), [
    ({"symbol": "NOPE"}, 404, "UNKNOWN_SYMBOL"),
    ({"depth": "0"}, 400, "INVALID_PARAMETER"),
    ({"depth": "101"}, 400, "INVALID_PARAMETER"),
    ({"depth": "deep"}, 400, "INVALID_PARAMETER"),
    ({"symbol": "S" * 100}, 400, "INVALID_PARAMETER"),
])
async def test_bad_symbols_and_depths(trades: AppClient, query: dict[str, str], status: int,
                                      code: str) -> None:
    response = await trades.get("/orderbook/", params=query)
    body = await response.json()
    assert (response.status, body["error"]["code"]) == (status, code)
