"""Every route of svc_orders and svc_trades with auth on, against every way a request can
be refused: the right status and code, and nothing changes (engine, order store,
journal, projection) however many refused requests arrive. Then what each key may see."""

import json
import time
import uuid
from typing import Any

from aiohttp import ClientSession

from common import keys
from common.openapi import Operation
from svc_orders import api as orders_api
from svc_orders import journaling
from svc_orders import openapi as orders_openapi
from svc_trades import openapi as trades_openapi
from tests.auth.conftest import Caller, Exchange, answer
from tests.helpers import AppClient, eventually
from tests.signing import signed_headers

Route = tuple[str, str, str, Any]  # service, method, path, JSON body (None: no body)


async def send(client: AppClient | ClientSession, method: str, path: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    """One request with exactly these headers (the body sent as the bytes signed)."""
    raw = b"" if body is None else json.dumps(body).encode()
    response = await client.request(method, path, data=raw or None,
                                    headers={"Content-Type": "application/json"} | (headers or {}))
    async with response:
        return response.status, await response.json(), dict(response.headers)


async def trade_between_alice_and_carol(ex: Exchange) -> tuple[str, str, str]:
    """(alice's resting buy, carol's filled sell, their trade's id)."""
    status, buy = await answer(await ex.alice.orders.post(
        "/orders/", json={"side": "buy", "quantity": 100, "price": "100.00"}))
    assert status == 201, buy
    status, sell = await answer(await ex.carol.orders.post(
        "/orders/", json={"side": "sell", "quantity": 40, "price": "100.00"}))
    assert status == 201, sell
    [fill] = sell["fills"]
    assert (fill["ask_order_id"], fill["seller_user_id"]) == (sell["order_id"],
                                                              ex.carol.user_id)
    return buy["order_id"], sell["order_id"], fill["trade_id"]


def routes(order: str, trade: str, key_id: str) -> list[Route]:
    """Every private route, aimed at alice's order and trade."""
    return [
        ("orders", "POST", "/orders/", {"side": "buy", "quantity": 10, "price": "99.00"}),
        ("orders", "GET", f"/orders/{order}/", None),
        ("orders", "PUT", f"/orders/{order}/", {"price": "99.50"}),
        ("orders", "PATCH", f"/orders/{order}/", {"quantity": 90}),
        ("orders", "DELETE", f"/orders/{order}/", None),
        ("orders", "GET", "/orders/", None),
        ("trades", "GET", "/trades/", None),
        ("trades", "GET", f"/trades/{trade}/", None),
        ("trades", "POST", f"/trades/{trade}/settle/", None),
        ("trades", "GET", "/orders/", None),
        ("trades", "POST", "/admin/keys/", {"role": "admin"}),
        ("trades", "DELETE", f"/admin/keys/{key_id}/", None),
    ]


def harmless(route: Route) -> Route:
    """The same route aimed at nothing (an unknown id, an invalid body), so that a
    request accepted once changes nothing: what a replay test sends first."""
    service, method, path, body = route
    path = "/".join(str(uuid.uuid4()) if keys.KEY_ID.match(part) else part
                    for part in path.split("/"))
    if body is not None:
        body = {"role": "nobody"} if "role" in body else {"side": "nowhere", "quantity": 1}
    return service, method, path, body


async def test_every_route_refuses_every_bad_request_and_changes_nothing(
        exchange: Exchange) -> None:
    ex = exchange
    order, _, trade = await trade_between_alice_and_carol(ex)
    box = keys.SecretBox(ex.settings.secret_key or "")
    revoked = await keys.create_key(ex.kv, box, "trader", ex.alice.user_id)
    await keys.revoke_key(ex.kv, revoked.key_id)
    clients = {"orders": ex.orders, "trades": ex.trades}
    all_routes = routes(order, trade, ex.bob.key.key_id)
    before = await ex.state()

    async def expect(route: Route, headers: dict[str, str] | None, status: int,
                     code: str) -> None:
        service, method, path, body = route
        got, body_back, response_headers = await send(clients[service], method, path, body,
                                                      headers)
        assert (got, body_back["error"]["code"]) == (status, code), (route, body_back)
        assert "RateLimit-Limit" in response_headers, route
        assert ex.alice.key.secret not in json.dumps(body_back)

    for route in all_routes:
        service, method, path, body = route
        raw = b"" if body is None else json.dumps(body).encode()
        await expect(route, None, 401, "AUTH_REQUIRED")
        wrong = signed_headers(ex.alice.key.key_id, "not-the-secret", method, path, raw)
        await expect(route, wrong, 401, "INVALID_SIGNATURE")
        stale = str(int(time.time() * 1000) - 60_000)
        await expect(route, ex.alice.headers(method, path, raw, stale), 401,
                     "TIMESTAMP_OUT_OF_WINDOW")
        await expect(route, signed_headers(revoked.key_id, revoked.secret, method, path, raw),
                     401, "INVALID_SIGNATURE")
        if method != "GET":
            needed = "PERMISSION_DENIED"
            await expect(route, ex.alice_viewer.headers(method, path, raw), 403, needed)
        # Replays: the first request is accepted (and aimed at nothing), its copy is not.
        service, method, path, body = aimless = harmless(route)
        raw = b"" if body is None else json.dumps(body).encode()
        replayed = ex.admin.headers(method, path, raw)
        first, _, _ = await send(clients[service], method, path, body, replayed)
        assert first in (200, 400, 404), aimless
        await expect(aimless, replayed, 401, "REPLAYED_REQUEST")
    # Another user's order and trade do not exist for bob; he acts for himself only.
    for service, method, path, body in all_routes[1:5]:
        await expect((service, method, path, body),
                     ex.bob.headers(method, path, b"" if body is None
                                    else json.dumps(body).encode()), 404, "ORDER_NOT_FOUND")
    path = f"/trades/{trade}/"
    await expect(("trades", "GET", path, None), ex.bob.headers("GET", path), 404,
                 "TRADE_NOT_FOUND")
    for service, method, path, body in [*all_routes[8:9], *all_routes[10:]]:
        raw = b"" if body is None else json.dumps(body).encode()
        await expect((service, method, path, body), ex.bob.headers(method, path, raw), 403,
                     "PERMISSION_DENIED")  # settle and keys are for admins
    for_alice = {"side": "buy", "quantity": 10, "price": "99.00", "user_id": ex.alice.user_id}
    await expect(("orders", "POST", "/orders/", for_alice),
                 ex.bob.headers("POST", "/orders/", json.dumps(for_alice).encode()), 403,
                 "PERMISSION_DENIED")
    for service, path in [("orders", "/orders/"), ("trades", "/orders/"),
                          ("trades", "/trades/")]:
        asked = f"{path}?user_id={ex.alice.user_id}"
        await expect((service, "GET", asked, None), ex.bob.headers("GET", asked), 403,
                     "PERMISSION_DENIED")
    assert await ex.state() == before


async def test_each_key_sees_its_own_rows_and_an_admin_sees_all(exchange: Exchange) -> None:
    ex = exchange
    order, sold, trade = await trade_between_alice_and_carol(ex)
    status, own = await answer(await ex.bob.orders.post(
        "/orders/", json={"side": "sell", "quantity": 5, "price": "120.00"}))
    assert (status, own["user_id"]) == (201, ex.bob.user_id)
    every = {order, sold, own["order_id"]}

    async def listed(caller: Caller, service: str, path: str, name: str) -> set[str]:
        session = caller.orders if service == "orders" else caller.trades
        status, body = await answer(await session.get(path))
        assert status == 200, body
        return {row["order_id" if name == "orders" else "trade_id"] for row in body[name]}

    async def projected() -> bool:
        return await listed(ex.admin, "trades", "/orders/", "orders") == every

    await eventually(projected)
    for service in ("orders", "trades"):
        assert await listed(ex.alice, service, "/orders/", "orders") == {order}
        assert await listed(ex.alice_viewer, service, "/orders/", "orders") == {order}
        assert await listed(ex.bob, service, "/orders/", "orders") == {own["order_id"]}
        assert await listed(ex.admin, service, "/orders/", "orders") == every
        assert await listed(ex.admin, service, f"/orders/?user_id={ex.bob.user_id}",
                            "orders") == {own["order_id"]}
    assert await listed(ex.alice, "trades", "/trades/", "trades") == {trade}
    assert await listed(ex.carol, "trades", "/trades/", "trades") == {trade}
    assert await listed(ex.bob, "trades", "/trades/", "trades") == set()
    assert await listed(ex.admin, "trades", "/trades/", "trades") == {trade}
    for caller in (ex.alice, ex.carol, ex.alice_viewer, ex.admin):
        status, seen = await answer(await caller.trades.get(f"/trades/{trade}/"))
        assert (status, seen["trade_id"]) == (200, trade)
    status, seen = await answer(await ex.alice_viewer.orders.get(f"/orders/{order}/"))
    assert (status, seen["order_id"]) == (200, order)
    assert "issued_by_key" not in seen  # the audit field is for admins only
    status, seen = await answer(await ex.admin.orders.get(f"/orders/{order}/"))
    assert (status, seen["issued_by_key"]) == (200, ex.alice.key.key_id)
    status, seen = await answer(await ex.admin.orders.get(f"/orders/{sold}/"))
    assert seen["issued_by_key"] == ex.carol.key.key_id


async def test_public_routes_need_no_key_and_show_no_user_or_order_ids(
        exchange: Exchange) -> None:
    ex = exchange
    _, _, trade = await trade_between_alice_and_carol(ex)
    async with ClientSession(str(ex.trades.make_url("/"))) as anyone:
        async def published() -> Any:
            status, body = await answer(await anyone.get("/trades/public/?symbol=DEFAULT"))
            assert status == 200, body
            return body if body["trades"] else None

        body = await eventually(published)
        [row] = body["trades"]
        assert row["trade_id"] == trade
        assert (row["price"], row["quantity"], row["aggressor_side"]) == ("100.00", 40, "sell")
        assert not {"buyer_user_id", "seller_user_id", "bid_order_id",
                    "ask_order_id"} & set(row)
        assert set(body["pagination"]) >= {"page", "page_size", "next_cursor"}
        status, _ = await answer(await anyone.get("/trades/public/?symbol=NOPE"))
        assert status == 404
        async def book_shows_the_rest() -> bool:
            status, book = await answer(await anyone.get("/orderbook/?symbol=DEFAULT"))
            return status == 200 and [level["quantity"] for level in book["bids"]] == [60]

        await eventually(book_shows_the_rest)
        status, _ = await answer(await anyone.get("/ready/"))
        assert status == 200


async def test_the_journal_and_the_projection_hold_the_key_of_every_command(
        exchange: Exchange) -> None:
    ex = exchange
    order, _, _ = await trade_between_alice_and_carol(ex)
    status, _ = await answer(await ex.alice.orders.patch(f"/orders/{order}/",
                                                         json={"quantity": 80}))
    assert status == 200
    status, _ = await answer(await ex.admin.orders.delete(f"/orders/{order}/"))
    assert status == 200
    sequencer = ex.orders.app[orders_api.SEQUENCER]
    end = await journaling.stream_last_seq(sequencer.js)
    issued = [batch.key_id async for _, batches in journaling.read(sequencer.journal.nats, 1, end)
              for batch in batches]
    assert issued == [ex.alice.key.key_id, ex.carol.key.key_id, ex.alice.key.key_id,
                      ex.admin.key.key_id]


async def test_an_idempotency_key_is_per_user(exchange: Exchange) -> None:
    ex = exchange
    body = {"side": "buy", "quantity": 10, "price": "90.00", "client_order_id": "same"}
    first = await answer(await ex.alice.orders.post("/orders/", json=body))
    again = await answer(await ex.alice.orders.post("/orders/", json=body))
    other = await answer(await ex.bob.orders.post("/orders/", json=body))
    assert (first[0], again[0], other[0]) == (201, 200, 201)
    assert first[1]["order_id"] == again[1]["order_id"] != other[1]["order_id"]
    assert other[1]["user_id"] == ex.bob.user_id


def party(trade: dict[str, Any]) -> tuple[Any, ...]:
    return (trade["bid_order_id"], trade["buyer_user_id"], trade["ask_order_id"],
            trade["seller_user_id"])


async def test_a_party_to_a_trade_never_learns_the_other_party(exchange: Exchange) -> None:
    """Fills in command answers and trades in listings name the caller's own side only;
    the other side's user and order are null (an admin sees both)."""
    ex = exchange
    order, sold, trade = await trade_between_alice_and_carol(ex)
    status, resting = await answer(await ex.bob.orders.post(
        "/orders/", json={"side": "sell", "quantity": 10, "price": "101.00"}))
    assert status == 201, resting
    status, moved = await answer(await ex.alice.orders.patch(
        f"/orders/{order}/", json={"price": "101.00"}))
    assert status == 200, moved
    [fill] = moved["fills"]
    assert party(fill) == (order, ex.alice.user_id, None, None)
    status, sell = await answer(await ex.carol.orders.post(
        "/orders/", json={"side": "sell", "quantity": 5, "price": "100.00"}))
    [fill] = sell["fills"]
    assert party(fill) == (None, None, sell["order_id"], ex.carol.user_id)
    status, own = await answer(await ex.alice.orders.post(  # a self-trade: both sides hers
        "/orders/", json={"side": "sell", "quantity": 1, "price": "101.00"}))
    [fill] = own["fills"]
    assert party(fill) == (order, ex.alice.user_id, own["order_id"], ex.alice.user_id)

    async def trades_seen(caller: Caller) -> dict[str, tuple[Any, ...]]:
        status, body = await answer(await caller.trades.get("/trades/"))
        assert status == 200, body
        return {row["trade_id"]: party(row) for row in body["trades"]}

    async def projected() -> bool:
        return len(await trades_seen(ex.admin)) == 4

    await eventually(projected)
    first = (order, ex.alice.user_id, sold, ex.carol.user_id)
    as_carol, as_alice = (None, None, sold, ex.carol.user_id), (order, ex.alice.user_id,
                                                                 None, None)
    assert (await trades_seen(ex.admin))[trade] == first
    carol_sees = await trades_seen(ex.carol)
    assert (len(carol_sees), carol_sees[trade]) == (2, as_carol)
    assert (await trades_seen(ex.alice_viewer))[trade] == as_alice
    for caller, expected in [(ex.carol, as_carol), (ex.alice, as_alice), (ex.admin, first)]:
        status, seen = await answer(await caller.trades.get(f"/trades/{trade}/"))
        assert (status, party(seen)) == (200, expected)


async def test_each_operation_is_as_open_as_its_document_says(exchange: Exchange) -> None:
    """Unsigned, every operation the documents say needs a key answers 401; a public one
    answers without a key and counts against the address; a probe is never counted."""
    ex = exchange
    some_id = str(uuid.uuid4())
    documented: list[tuple[AppClient, Operation]] = [
        *((ex.orders, op) for op in orders_openapi.OPERATIONS),
        *((ex.trades, op) for op in trades_openapi.OPERATIONS)]
    for client, op in documented:
        path = op.path
        for name in ("order_id", "trade_id", "key_id", "user_id"):
            path = path.replace(f"{{{name}}}", some_id)
        status, body, headers = await send(client, op.method, path)
        if op.access == "key":
            assert (status, body["error"]["code"]) == (401, "AUTH_REQUIRED"), op
        else:
            assert status in (200, 403), (op, body)  # 403: /metrics, without its token
        assert ("RateLimit-Limit" in headers) == (op.access != "probe"), op
