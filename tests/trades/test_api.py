"""The read API on a projected market: every filter, every pagination path, every 400.

One small market (tests/trades/journal.py `market`) is journaled and projected once for
the module; each test starts the real app against it. Expected answers are computed
from the fold of the same journal, so they hold by construction, not by hand-copying.
The order listing is asked of both services: svc_orders, with none of the market in
memory, answers it (and each order) through svc_trades' read model over NATS.
"""

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from common.config import Settings
from common.journal import ensure_stream
from common.messages import EventBatch
from common.views import OrderView, json_encoder, order_view
from ops.stack import NatsServer, PostgresServer, RedisServer
from svc_orders import api as orders_api_keys
from svc_orders.app import create_app as create_orders_app
from svc_trades.app import create_app
from svc_trades.migrations import migrate
from svc_trades.readmodel import OrderReadModel
from svc_trades.responder import Responder
from tests.helpers import AppClient as Client
from tests.helpers import create_database
from tests.trades.conftest import MakeClient, redis_url
from tests.trades.journal import (
    INSTRUMENTS,
    U1,
    U2,
    U3,
    caught_up,
    fold,
    last_seqs,
    market,
    projecting,
    publish,
    timestamp_of,
    write_instruments,
)

Json = dict[str, Any]


class Market(msgspec.Struct):
    dsn: str
    batches: list[EventBatch]
    orders: list[Json]  # newest first, as the API lists them
    trades: list[Json]


@pytest.fixture(scope="module")
def module_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    with server.start():
        yield server


@pytest.fixture(scope="module")
async def projected(module_nats: NatsServer, postgres_server: PostgresServer) -> Market:
    dsn = await create_database(postgres_server)
    batches = market()
    nc = await nats.connect(module_nats.url)
    js = nc.jetstream()
    await ensure_stream(js)
    await publish(js, batches)
    async with asyncpg.create_pool(dsn, min_size=1, max_size=2) as pool:
        await migrate(pool)
        async with projecting(pool, nc):
            await caught_up(pool, js)
    await nc.close()
    states, trades = fold(batches)
    views: list[OrderView] = [order_view(s, INSTRUMENTS[s.symbol]) for s in states.values()]
    return Market(dsn, batches, orders=jsonable(views[::-1]), trades=jsonable(trades[::-1]))


def jsonable(value: Any) -> Any:
    return msgspec.json.decode(json_encoder.encode(value))


@pytest.fixture
async def api(projected: Market, module_nats: NatsServer, redis_server: RedisServer,
              tmp_path: Path, aiohttp_client: MakeClient) -> Client:
    settings = Settings(nats_url=module_nats.url, pg_dsn=projected.dsn,
                        redis_url=redis_url(redis_server),
                        instruments_file=write_instruments(tmp_path))
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def orders_api(projected: Market, private_nats: NatsServer, redis_server: RedisServer,
                     tmp_path: Path) -> AsyncIterator[Client]:
    """svc_orders on an empty journal of its own, so every order it answers comes from
    svc_trades' read model (the responder alone, on the projected database). Both stop
    here, before their NATS server does."""
    nc = await nats.connect(private_nats.url)
    async with asyncpg.create_pool(projected.dsn, min_size=0, max_size=2) as pool:
        responder = Responder(nc, OrderReadModel(pool, INSTRUMENTS))
        await responder.start()
        settings = Settings(nats_url=private_nats.url, redis_url=redis_url(redis_server),
                            instruments_file=write_instruments(tmp_path))
        client = TestClient(TestServer(create_orders_app(settings)))
        await client.start_server()
        try:
            yield client
        finally:
            await client.close()
            await responder.close()
    await nc.close()


SERVICES = {"svc_trades": "api", "svc_orders": "orders_api"}


@pytest.fixture(params=list(SERVICES))
def lister(request: pytest.FixtureRequest) -> Client:
    """Either service's `GET /orders/` (only the one asked for is started)."""
    client: Client = request.getfixturevalue(SERVICES[request.param])
    return client


async def get(api: Client, path: str, **query: Any) -> tuple[int, Json]:
    response = await api.get(path, params=query)
    return response.status, await response.json()


async def test_the_original_readme_calls_answer(api: Client, projected: Market) -> None:
    status, body = await get(api, "/trades/")
    assert status == 200
    assert body["trades"] == projected.trades[:20]
    assert body["pagination"] == {"page": 1, "page_size": 20, "total_pages": 2,
                                  "total_count": 29, "has_next": True,
                                  "has_previous": False,
                                  "next_cursor": body["pagination"]["next_cursor"]}
    status, page = await get(api, "/trades/", page=1, page_size=20)
    assert (status, page["trades"]) == (200, body["trades"])
    first = projected.trades[-1]
    assert (first["price"], first["quantity"], first["aggressor_side"]) == ("150.25", 50, "sell")
    assert (first["is_settled"], first["settlement_timestamp"]) == (False, None)
    status, orders = await get(api, "/orders/", status="ACTIVE", side="buy")
    assert status == 200
    assert {o["order_id"] for o in orders["orders"]} == {
        o["order_id"] for o in projected.orders if o["status"] == "ACTIVE" and o["side"] == "buy"}
    status, mine = await get(api, "/orders/", user_id=U1)
    assert [o["order_id"] for o in mine["orders"]] == [
        o["order_id"] for o in projected.orders if o["user_id"] == U1]
    assert (await api.get("/trades")).status == 200  # without the trailing slash too


async def test_prices_keep_each_instruments_grid(api: Client) -> None:
    _, alt = await get(api, "/trades/", symbol="ALT")
    [trade] = alt["trades"]
    assert (trade["price"], trade["quantity"]) == ("0.9975", 10)


async def test_order_prices_keep_each_instruments_grid(lister: Client,
                                                       projected: Market) -> None:
    _, orders = await get(lister, "/orders/", symbol="ALT")
    assert [(o["price"], o["average_traded_price"]) for o in orders["orders"]] == [
        ("1.0000", "0.9975"), ("0.9975", "0.9975")]
    _, first = await get(lister, "/orders/", client_order_id="a1")
    [order] = first["orders"]
    assert (order["status"], order["traded_quantity"], order["average_traded_price"]) == (
        "FILLED", 100, "150.25")
    assert order["created_at"] == timestamp_of(projected.batches[0])


@pytest.mark.parametrize(("listing", "lister"), [
    ("trades", "svc_trades"), ("orders", "svc_trades"), ("orders", "svc_orders")],
    indirect=["lister"])
@pytest.mark.parametrize("page_size", [1, 7, 20, 100])
async def test_cursor_pages_and_offset_pages_agree(lister: Client, projected: Market,
                                                   listing: str, page_size: int) -> None:
    api = lister
    everything = getattr(projected, listing)
    walked, cursor, page = [], None, 1
    while True:
        query: Json = {"page_size": page_size} | ({"cursor": cursor} if cursor else {})
        status, body = await get(api, f"/{listing}/", **query)
        assert status == 200
        pagination = body["pagination"]
        assert (pagination["page"], pagination["total_count"]) == (page, len(everything))
        assert pagination["has_previous"] == (page > 1)
        _, by_offset = await get(api, f"/{listing}/", page=page, page_size=page_size)
        assert by_offset[listing] == body[listing]
        walked += body[listing]
        cursor = pagination["next_cursor"]
        assert pagination["has_next"] == (cursor is not None)
        if cursor is None:
            break
        page += 1
    assert walked == everything
    assert page == pagination["total_pages"] == -(-len(everything) // page_size)


async def test_a_page_past_the_end_is_empty(lister: Client) -> None:
    status, body = await get(lister, "/orders/", page=3)
    assert (status, body["orders"]) == (200, [])
    assert (body["pagination"]["has_previous"], body["pagination"]["has_next"]) == (True, False)


def _trades(pick: Callable[[Json], bool]) -> Callable[[Market], list[Json]]:
    return lambda market: [t for t in market.trades if pick(t)]


FIRST_ORDER = "00000000-0000-4000-8000-000000000001"


@pytest.mark.parametrize(("query", "expected"), [
    ({"symbol": "ALT"}, _trades(lambda t: t["symbol"] == "ALT")),
    ({"symbol": "NOPE"}, _trades(lambda t: False)),
    ({"order_id": FIRST_ORDER}, _trades(lambda t: FIRST_ORDER in (
        t["bid_order_id"], t["ask_order_id"]))),
    ({"user_id": U2}, _trades(lambda t: U2 in (t["buyer_user_id"], t["seller_user_id"]))),
    ({"user_id": U2.upper()}, _trades(lambda t: U2 in (t["buyer_user_id"],
                                                       t["seller_user_id"]))),
    ({"settled": "false"}, _trades(lambda t: True)),
    ({"settled": "TRUE"}, _trades(lambda t: False)),
    ({"symbol": "DEFAULT", "user_id": U3}, _trades(
        lambda t: t["symbol"] == "DEFAULT" and U3 in (t["buyer_user_id"],
                                                      t["seller_user_id"]))),
], ids=lambda value: str(value) if isinstance(value, dict) else "")
async def test_trade_filters(api: Client, projected: Market, query: Json,
                             expected: Callable[[Market], list[Json]]) -> None:
    status, body = await get(api, "/trades/", page_size=100, **query)
    assert status == 200
    assert body["trades"] == expected(projected)
    assert body["pagination"]["total_count"] == len(expected(projected))


async def test_trades_between_two_moments(api: Client, projected: Market) -> None:
    since = timestamp_of(projected.batches[2])  # the second trade's command
    until = timestamp_of(projected.batches[7])  # the ALT trade's command (excluded)
    status, body = await get(api, "/trades/", since=since, until=until)
    assert status == 200
    assert [t["execution_timestamp"] for t in body["trades"]] == [since]
    _, later = await get(api, "/trades/", since=since.replace("Z", "+00:00"), page_size=100)
    assert later["trades"] == [t for t in projected.trades if t["execution_timestamp"] >= since]


def _orders(pick: Callable[[Json], bool]) -> Callable[[Market], list[Json]]:
    return lambda market: [o for o in market.orders if pick(o)]


@pytest.mark.parametrize(("query", "expected"), [
    ({"status": "ACTIVE"}, _orders(lambda o: o["status"] == "ACTIVE")),
    ({"status": "filled"}, _orders(lambda o: o["status"] == "FILLED")),
    ({"status": "REJECTED"}, _orders(lambda o: o["reject_reason"] is not None)),
    ({"side": "SELL"}, _orders(lambda o: o["side"] == "sell")),
    ({"side": "-1"}, _orders(lambda o: o["side"] == "sell")),
    ({"side": "1"}, _orders(lambda o: o["side"] == "buy")),
    ({"user_id": U3}, _orders(lambda o: o["user_id"] == U3)),
    ({"symbol": "ALT"}, _orders(lambda o: o["symbol"] == "ALT")),
    ({"client_order_id": "a1"}, _orders(lambda o: o["client_order_id"] == "a1")),
    ({"status": "CANCELLED", "user_id": U2}, _orders(
        lambda o: o["status"] == "CANCELLED" and o["user_id"] == U2)),
], ids=lambda value: str(value) if isinstance(value, dict) else "")
async def test_order_filters(lister: Client, projected: Market, query: Json,
                             expected: Callable[[Market], list[Json]]) -> None:
    status, body = await get(lister, "/orders/", page_size=100, **query)
    assert status == 200
    assert body["orders"] == expected(projected) != []
    assert body["as_of_seq"] == last_seqs(projected.batches)


async def test_one_trade_by_id(api: Client, projected: Market) -> None:
    trade = projected.trades[3]
    status, body = await get(api, f"/trades/{trade['trade_id']}/")
    assert (status, body) == (200, trade)
    status, body = await get(api, f"/trades/{trade['trade_id'].upper()}")
    assert (status, body) == (200, trade)


BAD = "INVALID_PARAMETER"


@pytest.mark.parametrize(("path", "query", "status", "code"), [
    ("/trades/6f1c1f8e-3a52-4c53-9b8e-000000000000/", {}, 404, "TRADE_NOT_FOUND"),
    ("/trades/not-a-uuid/", {}, 400, "INVALID_TRADE_ID"),
    ("/trades/6f1c1f8e-3a52-4c53-9b8e-000000000000/settle/", {}, 404, "TRADE_NOT_FOUND"),
    ("/trades/'; DROP TABLE trades; --/settle/", {}, 400, "INVALID_TRADE_ID"),
    ("/trades/", {"settled": "maybe"}, 400, BAD),
    ("/trades/", {"since": "yesterday"}, 400, BAD),
    ("/trades/", {"until": "2026-13-01T00:00:00Z"}, 400, BAD),
    ("/trades/", {"order_id": "42"}, 400, BAD),
    ("/trades/", {"user_id": "nobody"}, 400, BAD),
    ("/trades/", {"page_size": "101"}, 400, BAD),
    ("/trades/", {"cursor": "WyJvcmRlcnMiLDIsNV0"}, 400, "INVALID_CURSOR"),  # an orders one
    ("/trades/", {"cursor": "WyJ0cmFkZXMiLDIsOTIyMzM3MjAzNjg1NDc3NTgwOF0"}, 400,  # id 2^63
     "INVALID_CURSOR"),
    ("/trades/", {"symbol": "\x00"}, 400, BAD),
    ("/trades/", {"symbol": "A\x1bB"}, 400, BAD),
    # Integer query values are ASCII digits only: int() would read each of these.
    ("/trades/", {"page": "\u0661\u0662"}, 400, BAD),  # Arabic-Indic 12
    ("/trades/", {"page": "1_0"}, 400, BAD),
    ("/trades/", {"page": " 2 "}, 400, BAD),
    ("/trades/", {"page_size": "+5"}, 400, BAD),
    ("/orderbook/", {"depth": "\u0661\u0662"}, 400, BAD),
    ("/orderbook/", {"depth": "1_0"}, 400, BAD),
    ("/orderbook/", {"depth": " 5"}, 400, BAD),
    ("/candles/", {"limit": "+5"}, 400, BAD),
    ("/candles/", {"limit": "1_0"}, 400, BAD),
    ("/candles/", {"limit": "\uff15"}, 400, BAD),  # fullwidth 5
], ids=lambda value: str(value) if isinstance(value, dict) else None)
async def test_bad_ids_and_query_values_answer_in_the_contract_shape(
        api: Client, path: str, query: Json, status: int, code: str) -> None:
    method = "POST" if path.endswith("/settle/") else "GET"
    await assert_error(await api.request(method, path, params=query), status, code)


@pytest.mark.parametrize(("query", "code"), [
    ({"status": "OPEN"}, BAD),
    ({"side": "up"}, BAD),
    ({"side": "2"}, BAD),
    ({"user_id": "123"}, BAD),
    ({"client_order_id": "x" * 65}, BAD),
    ({"page": "0"}, BAD),
    ({"page": "two"}, BAD),
    ({"page_size": "1000"}, BAD),
    ({"page_size": "0"}, BAD),
    ({"page_size": "-5"}, BAD),
    ({"page": "\u0661\u0662"}, BAD),  # Arabic-Indic 12: int() reads it, the contract does not
    ({"page": "1_0"}, BAD),
    ({"page": " 2 "}, BAD),
    ({"page_size": "+5"}, BAD),
    ({"page_size": "5\n"}, BAD),
    ({"cursor": "garbage!"}, "INVALID_CURSOR"),
    ({"cursor": "WyJ0cmFkZXMiLDIsNV0"}, "INVALID_CURSOR"),  # a trades one
    ({"cursor": "WyJvcmRlcnMiLDAsNV0"}, "INVALID_CURSOR"),  # page 0
    ({"cursor": "WyJvcmRlcnMiLDIsOTIyMzM3MjAzNjg1NDc3NTgwOF0"}, "INVALID_CURSOR"),  # id 2^63
    ({"cursor": "WyJvcmRlcnMiLDIsMTE4MDU5MTYyMDcxNzQxMTMwMzQyNF0"}, "INVALID_CURSOR"),
    ({"symbol": "\x00"}, BAD),
    ({"client_order_id": "\x00"}, BAD),
    ({"client_order_id": "a\x7fb"}, BAD),
], ids=str)
async def test_bad_order_listing_queries_answer_alike(lister: Client, query: Json,
                                                      code: str) -> None:
    await assert_error(await lister.get("/orders/", params=query), 400, code)


async def assert_error(response: ClientResponse, status: int, code: str) -> None:
    body = await response.json()
    assert (response.status, body["error"]["code"]) == (status, code)
    assert set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["message"], str)


@pytest.mark.parametrize("query", [
    {}, {"page": "2", "page_size": "7"}, {"status": "filled"}, {"symbol": "ALT"},
    {"user_id": U3, "page_size": "5"}, {"page": "9"}], ids=str)
async def test_both_services_list_orders_byte_for_byte_alike(api: Client, orders_api: Client,
                                                             query: Json) -> None:
    theirs = await api.get("/orders/", params=query)
    mine = await orders_api.get("/orders/", params=query)
    assert (mine.status, mine.content_type) == (theirs.status, theirs.content_type) == (
        200, "application/json")
    assert await mine.read() == await theirs.read()


async def test_svc_orders_answers_the_orders_it_does_not_hold_from_svc_trades(
        orders_api: Client, projected: Market) -> None:
    assert orders_api.app[orders_api_keys.SEQUENCER].store.get(FIRST_ORDER) is None
    for order in projected.orders:
        status, body = await get(orders_api, f"/orders/{order['order_id']}/")
        assert (status, body) == (200, order)
    status, body = await get(orders_api, "/orders/00000000-0000-4000-8000-0000000000ff/")
    assert (status, body["error"]["code"]) == (404, "ORDER_NOT_FOUND")
    response = await orders_api.delete(f"/orders/{FIRST_ORDER}/")  # filled long ago
    await assert_error(response, 409, "ORDER_NOT_ACTIVE")
