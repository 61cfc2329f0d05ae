"""The order API as a client sees it: the original system's examples and the contract."""

from typing import Any

import pytest

from tests.helpers import AppClient
from tests.openapi_check import check_answer

USER = "123e4567-e89b-12d3-a456-426614174000"
OTHER = "123e4567-e89b-12d3-a456-426614174001"

Client = AppClient


async def call(client: Client, method: str, path: str, body: Any = None,
               **kwargs: Any) -> tuple[int, Any]:
    """One request; every answer must also match the service's OpenAPI document."""
    response = await client.request(method, path, json=body, **kwargs)
    answer = await response.json()
    spec = await (await client.get("/openapi.json")).json()
    template = "/orders/" if path.rstrip("/") == "/orders" else "/orders/{order_id}/"
    if response.status != 405 and method.lower() in spec["paths"].get(template, {}):
        check_answer(spec, method, template, response.status, answer)
    return response.status, answer


async def test_original_readme_examples_place_get_modify_cancel(orders: Client) -> None:
    status, buy = await call(orders, "POST", "/orders/",
                             {"side": "buy", "quantity": 100, "price": 150.25, "user_id": USER})
    assert status == 201
    assert (buy["status"], buy["price"], buy["remaining_quantity"]) == ("ACTIVE", "150.25", 100)
    assert buy["symbol"] == "DEFAULT"
    assert buy["fills"] == []

    status, sell = await call(orders, "POST", "/orders/",
                              {"side": "sell", "quantity": 50, "price": 150.20, "user_id": OTHER})
    assert status == 201
    assert (sell["status"], sell["traded_quantity"]) == ("FILLED", 50)
    [fill] = sell["fills"]
    assert (fill["price"], fill["quantity"]) == ("150.25", 50)  # the maker's price
    assert (fill["bid_order_id"], fill["ask_order_id"]) == (buy["order_id"], sell["order_id"])
    assert fill["aggressor_side"] == "sell"

    status, now = await call(orders, "GET", f"/orders/{buy['order_id']}/")
    assert status == 200
    assert (now["status"], now["remaining_quantity"], now["average_traded_price"]) == (
        "PARTIALLY_FILLED", 50, "150.25")

    status, moved = await call(orders, "PUT", f"/orders/{buy['order_id']}/", {"price": 150.30})
    assert status == 200
    assert (moved["price"], moved["remaining_quantity"], moved["quantity"]) == ("150.30", 50, 100)

    status, cancelled = await call(orders, "DELETE", f"/orders/{buy['order_id']}")
    assert status == 200
    assert (cancelled["status"], cancelled["cancelled_quantity"]) == ("CANCELLED", 50)
    assert cancelled["is_active"] is False

    status, error = await call(orders, "DELETE", f"/orders/{buy['order_id']}/")
    assert (status, error["error"]["code"]) == (409, "ORDER_NOT_ACTIVE")
    status, error = await call(orders, "PATCH", f"/orders/{sell['order_id']}/", {"quantity": 60})
    assert (status, error["error"]["code"]) == (409, "ORDER_NOT_ACTIVE")


async def test_business_outcomes_are_orders_not_errors(orders: Client) -> None:
    await call(orders, "POST", "/orders/", {"side": "sell", "quantity": 5, "price": "10.00"})
    status, post_only = await call(orders, "POST", "/orders/", {
        "side": "buy", "quantity": 1, "price": "10.00", "post_only": True})
    assert (status, post_only["status"], post_only["reject_reason"]) == (
        201, "REJECTED", "POST_ONLY_WOULD_CROSS")
    status, fok = await call(orders, "POST", "/orders/", {
        "side": 1, "quantity": 6, "price": "10.00", "time_in_force": "fok"})
    assert (status, fok["status"], fok["reject_reason"], fok["fills"]) == (
        201, "REJECTED", "FOK_NOT_FILLABLE", [])
    status, market = await call(orders, "POST", "/orders/", {
        "side": "BUY", "quantity": 8, "type": "market"})
    assert (status, market["status"], market["traded_quantity"]) == (201, "CANCELLED", 5)
    assert (market["cancelled_quantity"], market["cancel_reason"]) == (3, "NO_LIQUIDITY")
    assert market["time_in_force"] == "IOC"


async def test_modify_quantity_keeps_or_loses_priority(orders: Client) -> None:
    _, first = await call(orders, "POST", "/orders/", {"side": "buy", "quantity": 10, "price": 5})
    _, second = await call(orders, "POST", "/orders/", {"side": "buy", "quantity": 10, "price": 5})
    await call(orders, "PATCH", f"/orders/{first['order_id']}/", {"quantity": 8})
    _, sell = await call(orders, "POST", "/orders/", {"side": "sell", "quantity": 8, "price": 5})
    assert [f["bid_order_id"] for f in sell["fills"]] == [first["order_id"]]
    _, third = await call(orders, "POST", "/orders/", {"side": "buy", "quantity": 1, "price": 5})
    await call(orders, "PATCH", f"/orders/{second['order_id']}/", {"quantity": 20})
    _, sell = await call(orders, "POST", "/orders/", {"side": "sell", "quantity": 25, "price": 5})
    assert [f["bid_order_id"] for f in sell["fills"]] == [third["order_id"], second["order_id"]]


async def test_repeated_client_order_id_returns_the_original(orders: Client) -> None:
    body = {"side": "buy", "quantity": 3, "price": "1.00", "user_id": USER,
            "client_order_id": "abc-1"}
    status, first = await call(orders, "POST", "/orders/", body)
    assert status == 201
    status, again = await call(orders, "POST", "/orders/", body)
    assert (status, again["order_id"]) == (200, first["order_id"])
    status, other_user = await call(orders, "POST", "/orders/", {**body, "user_id": OTHER})
    assert status == 201
    assert other_user["order_id"] != first["order_id"]
    headers = {"Idempotency-Key": "key-9"}
    plain = {"side": "buy", "quantity": 3, "price": "1.00"}
    status, keyed = await call(orders, "POST", "/orders/", plain, headers=headers)
    assert (status, keyed["client_order_id"]) == (201, "key-9")
    status, repeat = await call(orders, "POST", "/orders/", plain, headers=headers)
    assert (status, repeat["order_id"]) == (200, keyed["order_id"])


@pytest.mark.parametrize(("body", "code"), [
    ({"quantity": 1, "price": 1}, "VALIDATION_ERROR"),
    ({"side": "buy", "quantity": 1}, "INVALID_PRICE"),
    ({"side": "hold", "quantity": 1, "price": 1}, "INVALID_SIDE"),
    ({"side": 2, "quantity": 1, "price": 1}, "INVALID_SIDE"),
    ({"side": True, "quantity": 1, "price": 1}, "VALIDATION_ERROR"),
    ({"side": "buy", "quantity": 0, "price": 1}, "INVALID_QUANTITY"),
    ({"side": "buy", "quantity": -5, "price": 1}, "INVALID_QUANTITY"),
    ({"side": "buy", "quantity": 1.5, "price": 1}, "INVALID_QUANTITY"),
    ({"side": "buy", "quantity": "ten", "price": 1}, "INVALID_QUANTITY"),
    ({"side": "buy", "quantity": 10**30, "price": 1}, "INVALID_QUANTITY"),
    ({"side": "buy", "quantity": [1], "price": 1}, "VALIDATION_ERROR"),
    ({"side": "buy", "quantity": 1, "price": "1.001"}, "INVALID_PRICE"),
    ({"side": "buy", "quantity": 1, "price": 0}, "INVALID_PRICE"),
    ({"side": "buy", "quantity": 1, "price": -1}, "INVALID_PRICE"),
    ({"side": "buy", "quantity": 1, "price": "1e999999"}, "INVALID_PRICE"),
    ({"side": "buy", "quantity": 1, "price": "NaN"}, "INVALID_PRICE"),
    ({"side": "buy", "quantity": 1, "price": 1000000}, "INVALID_PRICE"),
    ({"side": "buy", "quantity": 1, "price": 1, "type": "stop"}, "INVALID_TYPE"),
    ({"side": "buy", "quantity": 1, "price": 1, "time_in_force": "GTD"},
     "INVALID_TIME_IN_FORCE"),
    ({"side": "buy", "quantity": 1, "type": "market", "time_in_force": "GTC"},
     "INVALID_TIME_IN_FORCE"),
    ({"side": "buy", "quantity": 1, "price": 1, "type": "market"}, "INVALID_PRICE"),
    ({"side": "buy", "quantity": 1, "price": 1, "stp": "sometimes"}, "INVALID_STP"),
    ({"side": "buy", "quantity": 1, "price": 1, "symbol": "NOPE"}, "UNKNOWN_SYMBOL"),
    ({"side": "buy", "quantity": 1, "price": 1, "user_id": "bob"}, "INVALID_USER_ID"),
    ({"side": "buy", "quantity": 1, "price": 1, "client_order_id": "x" * 65},
     "INVALID_CLIENT_ORDER_ID"),
    ({"side": "buy", "quantity": 1, "price": 1, "client_order_id": "a\u0000b"},
     "INVALID_CLIENT_ORDER_ID"),
    ({"side": "buy", "quantity": 1, "price": 1, "client_order_id": "a\u009bb"},
     "INVALID_CLIENT_ORDER_ID"),
    ({"side": "buy", "quantity": 1, "price": "1_000"}, "INVALID_PRICE"),
    ({"side": "buy", "quantity": 1, "price": " 1.00 "}, "INVALID_PRICE"),
    ({"side": "buy", "quantity": "\u0661\u0662", "price": 1}, "INVALID_QUANTITY"),
    ({"side": "buy", "quantity": "1e2", "price": 1}, "INVALID_QUANTITY"),
    ({"side": "buy", "quantity": 1, "price": 1, "post_only": "yes"}, "VALIDATION_ERROR"),
    ([1, 2, 3], "VALIDATION_ERROR"),
    ("buy", "VALIDATION_ERROR"),
])
async def test_bad_bodies_answer_400_with_a_code(orders: Client, body: Any, code: str) -> None:
    status, answer = await call(orders, "POST", "/orders/", body)
    assert status == 400
    assert answer["error"]["code"] == code
    assert answer["error"]["message"]


async def test_malformed_requests(orders: Client) -> None:
    for raw in (b"{garbage", b"", b"\xff\xfe", b"null"):
        response = await orders.post("/orders/", data=raw)
        assert response.status == 400, raw
        assert (await response.json())["error"]["code"] in ("INVALID_JSON", "VALIDATION_ERROR")
    response = await orders.post("/orders/", data=b'{"side": "' + b"x" * 10_000 + b'"}')
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "BODY_TOO_LARGE"
    status, answer = await call(orders, "GET", "/orders/not-a-uuid/")
    assert (status, answer["error"]["code"]) == (400, "INVALID_ORDER_ID")
    missing = "00000000-0000-4000-8000-000000000000"
    for method in ("GET", "DELETE"):
        status, answer = await call(orders, method, f"/orders/{missing}/")
        assert (status, answer["error"]["code"]) == (404, "ORDER_NOT_FOUND")
    status, answer = await call(orders, "PUT", f"/orders/{missing}/", {"price": 1})
    assert status == 404
    status, answer = await call(orders, "GET", "/nowhere/")
    assert (status, answer["error"]["code"]) == (404, "NOT_FOUND")
    status, answer = await call(orders, "PATCH", "/orders/")
    assert (status, answer["error"]["code"]) == (405, "METHOD_NOT_ALLOWED")


async def test_modify_validation(orders: Client) -> None:
    _, order = await call(orders, "POST", "/orders/", {"side": "buy", "quantity": 10, "price": 5})
    path = f"/orders/{order['order_id']}/"
    for body, code in (({}, "INVALID_ORDER"), ({"price": "5.001"}, "INVALID_PRICE"),
                       ({"quantity": 0}, "INVALID_QUANTITY"), ({"price": None}, "INVALID_ORDER")):
        status, answer = await call(orders, "PUT", path, body)
        assert (status, answer["error"]["code"]) == (400, code), body
    await call(orders, "POST", "/orders/", {"side": "sell", "quantity": 4, "price": 5})
    status, answer = await call(orders, "PUT", path, {"quantity": 4})
    assert (status, answer["error"]["code"]) == (409, "INVALID_QUANTITY")
    status, answer = await call(orders, "GET", path)
    assert (answer["remaining_quantity"], answer["quantity"]) == (6, 10)


async def placed_count(orders: Client) -> float:
    text = await (await orders.get("/metrics")).text()
    line = 'orders_commands_total{kind="place",outcome="ok"} '
    return sum(float(row[len(line):]) for row in text.splitlines() if row.startswith(line))


async def test_probes(orders: Client) -> None:
    assert (await orders.get("/health/")).status == 200
    assert (await orders.get("/ready")).status == 200
    before = await placed_count(orders)
    await call(orders, "POST", "/orders/", {"side": "buy", "quantity": 1, "price": 1})
    assert await placed_count(orders) == before + 1
