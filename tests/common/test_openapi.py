"""The generated OpenAPI documents describe the real answers, and nothing else, and say
exactly which requests the services accept: a body the document allows is one the
validation accepts, and the other way round (property tests against the real code)."""

from typing import Any

import jsonschema
import msgspec
import pytest
from aiohttp import hdrs, web
from aiohttp.test_utils import make_mocked_request
from hypothesis import example, given, settings
from hypothesis import strategies as st

from common.access import needed_role
from common.config import Settings
from common.http import UUID_TEXT, ApiError, decode, uuid_path
from common.instruments import DEFAULT_INSTRUMENT
from common.listing import MAX_PAGE, MAX_PAGE_SIZE, order_filters
from common.messages import OrderStatus
from common.openapi import SECURITY_SCHEMES, Operation, document
from common.transfers import TransferBody, transfer_command
from svc_orders import openapi as orders
from svc_orders.app import create_app as orders_app
from svc_orders.requests import ModifyBody, PlaceBody, modify_command, place_command
from svc_trades import openapi as trades
from svc_trades.api import MAX_DEPTH
from svc_trades.app import create_app as trades_app
from svc_trades.keys import NewKey
from tests.common.auth import SECRET_KEY
from tests.openapi_check import body_validator, check_answer

ORDER = {
    "order_id": "bd2597f1-d1c5-4f75-ad87-a677d9948c65", "client_order_id": None,
    "symbol": "DEFAULT", "side": "sell", "type": "limit", "time_in_force": "GTC",
    "post_only": False, "stp": "none", "quantity": 50, "price": "150.20",
    "remaining_quantity": 0, "traded_quantity": 50, "cancelled_quantity": 0,
    "average_traded_price": "150.25", "status": "FILLED", "is_active": False,
    "cancel_reason": None, "reject_reason": None, "user_id": None,
    "created_at": "2026-11-24T14:11:55.252244Z", "updated_at": "2026-11-24T14:11:55.252244Z",
    "seq": 2,
}
ORDERS = document("svc_orders", orders.OPERATIONS)
TRADES = document("svc_trades", trades.OPERATIONS)
PLACE = body_validator(ORDERS, "POST", "/orders/")
MODIFY = body_validator(ORDERS, "PUT", "/orders/{order_id}/")
TRANSFER = body_validator(ORDERS, "POST", "/accounts/{user_id}/deposits/")
INSTRUMENTS = {DEFAULT_INSTRUMENT.symbol: DEFAULT_INSTRUMENT}
AUTH_ON = Settings(auth="on", secret_key=SECRET_KEY)
SERVICES = [("svc_orders", orders.OPERATIONS, orders_app),
            ("svc_trades", trades.OPERATIONS, trades_app)]


def _served(app: web.Application) -> dict[tuple[str, str], Any]:
    """(method, path) -> handler of every route, each path as written with its trailing
    slash (`add_routes` serves it without one too)."""
    routes = {(r.method, r.resource.canonical): r.handler for r in app.router.routes()
              if r.resource is not None and r.method != hdrs.METH_ANY}  # not the fallback
    return {(method, path): handler for (method, path), handler in routes.items()
            if (method, path + "/") not in routes}


@pytest.mark.parametrize(("title", "operations", "create_app"), SERVICES)
@pytest.mark.parametrize("settings", [Settings(), AUTH_ON], ids=["auth_off", "auth_on"])
def test_each_document_names_every_route_served_and_only_those(
        title: str, operations: list[Operation], create_app: Any, settings: Settings) -> None:
    """Its operations and the least role of each are what the service really serves and
    asks for in that mode."""
    auth = settings.auth == "on"
    spec = document(title, operations, auth)
    served = _served(create_app(settings))
    documented = {(method.upper(), path) for path, methods in spec["paths"].items()
                  for method in methods}
    assert documented == set(served)
    if auth:
        for op in operations:
            if op.access == "key":
                assert op.least_role == needed_role(op.method, served[op.method, op.path]), op


def test_with_auth_on_a_document_names_the_signing_headers_and_auth_answers() -> None:
    spec = document("svc_trades", trades.OPERATIONS, auth=True)
    schemes = spec["components"]["securitySchemes"]
    assert {s["name"] for s in schemes.values()} == {
        "EX-ACCESS-KEY", "EX-ACCESS-TIMESTAMP", "EX-ACCESS-SIGN"}
    assert spec["security"] == [{key: [] for key in SECURITY_SCHEMES}]  # all three at once
    error = {"$ref": "#/components/schemas/ErrorBody"}
    paths = spec["paths"]
    for path, method in [("/trades/", "get"), ("/trades/{trade_id}/settle/", "post"),
                         ("/admin/keys/", "post"), ("/admin/keys/{key_id}/", "delete")]:
        operation = paths[path][method]
        assert "security" not in operation  # the document's: signed
        for status in ("401", "403", "429"):
            assert operation["responses"][status]["content"]["application/json"][
                "schema"] == error, (path, status)
        assert set(operation["responses"]["429"]["headers"]) == {
            "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"}
        assert set(operation["responses"]["200" if method != "post" or "settle" in path
                                         else "201"]["headers"]) == {
            "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}
    assert "admin role" in paths["/trades/{trade_id}/settle/"]["post"]["description"]
    for path in ("/trades/public/", "/orderbook/", "/openapi.json"):
        public = paths[path]["get"]
        assert public["security"] == []
        assert "401" not in public["responses"]
        assert "429" in public["responses"]
    health = paths["/health/"]["get"]
    assert (health["security"], set(health["responses"])) == ([], {"200", "default"})
    headers = spec["components"]["headers"]
    assert headers["RateLimit-Remaining"]["required"] is True
    check_answer(spec, "POST", "/admin/keys/", 201, {
        "key_id": "bd2597f1-d1c5-4f75-ad87-a677d9948c65", "secret": "s",
        "user_id": "bd2597f1-d1c5-4f75-ad87-a677d9948c66", "role": "trader"})
    check_answer(spec, "GET", "/trades/public/", 200, {
        "trades": [{"trade_id": "bd2597f1-d1c5-4f75-ad87-a677d9948c65", "symbol": "DEFAULT",
                    "price": "1.00", "quantity": 1, "aggressor_side": "buy",
                    "execution_timestamp": "2026-11-24T14:11:55.252244Z", "seq": 1,
                    "trade_no": 1}],
        "pagination": {"page": 1, "page_size": 20, "total_pages": 1, "total_count": 1,
                       "has_next": False, "has_previous": False, "next_cursor": None},
        "as_of_seq": {"DEFAULT": 1}})
    with pytest.raises(jsonschema.ValidationError):  # public trades carry no ids
        check_answer(spec, "GET", "/trades/public/", 200, {
            "trades": [{"trade_id": "x", "buyer_user_id": "y"}], "pagination": {},
            "as_of_seq": {}})


def test_with_auth_off_a_document_has_no_auth() -> None:
    spec = document("svc_trades", trades.OPERATIONS)
    assert "security" not in spec
    assert "securitySchemes" not in spec["components"]
    assert "/admin/keys/" not in spec["paths"]
    assert "401" not in spec["paths"]["/trades/"]["get"]["responses"]
    assert "headers" not in spec["paths"]["/trades/"]["get"]["responses"]["200"]


def test_a_fill_may_name_no_counterparty() -> None:
    """With auth on, a party's fill has the other side's order and user null."""
    fill = {"trade_id": "bd2597f1-d1c5-4f75-ad87-a677d9948c65", "symbol": "DEFAULT",
            "price": "1.00", "quantity": 1, "bid_order_id": None, "buyer_user_id": None,
            "ask_order_id": "bd2597f1-d1c5-4f75-ad87-a677d9948c66", "seller_user_id": "u",
            "aggressor_side": "sell", "execution_timestamp": "2026-11-24T14:11:55.252244Z",
            "seq": 1, "trade_no": 1, "is_settled": False, "settlement_timestamp": None}
    check_answer(ORDERS, "POST", "/orders/", 201, {**ORDER, "fills": [fill]})


@settings(max_examples=200, derandomize=True)
@given(st.fixed_dictionaries({"role": st.sampled_from(["admin", "trader", "viewer", "Admin",
                                                       "root", "", 1])},
                             optional={"user_id": st.none() | st.sampled_from([
                                 "bd2597f1-d1c5-4f75-ad87-a677d9948c65",
                                 "BD2597F1-D1C5-4F75-AD87-A677D9948C65", "bd2597f1",
                                 "bd2597f1d1c54f75ad87a677d9948c65",
                                 "{bd2597f1-d1c5-4f75-ad87-a677d9948c65}", 7]),
                                       "other": st.just(1)}))
def test_new_key_document_allows_exactly_what_the_route_reads(body: dict[str, Any]) -> None:
    allowed = body_validator(document("svc_trades", trades.OPERATIONS, auth=True), "POST",
                             "/admin/keys/").is_valid(body)
    assert allowed == _accepted(lambda: decode(msgspec.json.encode(body), NewKey))


def test_orders_document_accepts_real_answers_and_refuses_others() -> None:
    assert ORDERS["openapi"] == "3.1.0"
    check_answer(ORDERS, "GET", "/orders/{order_id}/", 200, ORDER)
    check_answer(ORDERS, "POST", "/orders/", 201, {**ORDER, "fills": []})
    check_answer(ORDERS, "DELETE", "/orders/{order_id}/", 404,
                 {"error": {"code": "ORDER_NOT_FOUND", "message": "no order", "details": {}}})
    with pytest.raises(jsonschema.ValidationError):
        check_answer(ORDERS, "GET", "/orders/{order_id}/", 200, {**ORDER, "quantity": "50"})
    with pytest.raises(jsonschema.ValidationError):
        check_answer(ORDERS, "GET", "/orders/{order_id}/", 404, {"detail": "Not found."})


def _parameters(spec: dict[str, Any], method: str, path: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in spec["paths"][path][method]["parameters"]}


def test_ids_are_uuids() -> None:
    for spec in (ORDERS, TRADES):
        for path, methods in spec["paths"].items():
            for method in methods:
                for parameter in methods[method].get("parameters", []):
                    name = parameter["name"]
                    if parameter["in"] == "path" or name in ("order_id", "user_id"):
                        assert parameter["schema"]["format"] == "uuid", (path, parameter)
    user = ORDERS["components"]["schemas"]["PlaceBody"]["properties"]["user_id"]
    assert {"type": "string", "format": "uuid", "pattern": f"^{UUID_TEXT}$"} in user["anyOf"]
    for other_form in ("{bd2597f1-d1c5-4f75-ad87-a677d9948c65}", "bd2597f1d1c54f75ad87a677d9948c65",
                       "urn:uuid:bd2597f1-d1c5-4f75-ad87-a677d9948c65"):
        with pytest.raises(ApiError):  # the document refuses them: so do the services
            uuid_path(make_mocked_request("GET", "/", match_info={"id": other_form}), "id")


def test_query_parameters_carry_their_ranges_and_words() -> None:
    listing = _parameters(TRADES, "get", "/orders/")
    assert listing == _parameters(ORDERS, "get", "/orders/")
    assert (listing["page"]["schema"]["minimum"], listing["page"]["schema"]["maximum"]) == (
        1, MAX_PAGE)
    assert listing["page_size"]["schema"]["maximum"] == MAX_PAGE_SIZE == 100
    assert _parameters(TRADES, "get", "/orderbook/")["depth"]["schema"]["maximum"] == (
        MAX_DEPTH)
    assert all(p["allowEmptyValue"] for p in listing.values())  # empty is the same as none

    def matches(schema: dict[str, Any], value: str) -> bool:
        return jsonschema.Draft202012Validator(schema).is_valid(value)

    status = listing["status"]["schema"]
    assert all(matches(status, s.value.lower()) for s in OrderStatus)
    assert not matches(status, "partially_\ufb01lled")  # an fi ligature
    assert [matches(listing["side"]["schema"], s) for s in ("Buy", "-1", "0")] == [
        True, True, False]
    with pytest.raises(ApiError):  # the listing refuses what its document refuses
        order_filters(make_mocked_request("GET", "/orders/?status=partially_%EF%AC%81lled"))
    moments = _parameters(TRADES, "get", "/trades/")
    assert moments["since"]["schema"]["format"] == "date-time"
    assert [matches(moments["settled"]["schema"], s) for s in ("TRUE", "no", "y")] == [
        True, True, False]


def _accepted(build: Any) -> bool:
    try:
        build()
    except ApiError:
        return False
    return True


WORDS = ["buy", "SELL", "Buy", "limit", "MARKET", "Market", "mar\u212aet", "stop", "",
         "gtc", "IOC", "\u0131oc", "fok", "Day", "GTD", "none", "Cancel_Both",
         "cancel_oldest", "cancel-newest", "DEFAULT", "default", "OTHER"]
PRICES = (st.none() | st.integers(-1, 100_000_001)
          | st.from_regex(r"-?0{0,2}[0-9]{1,7}(\.[0-9]{1,4})?", fullmatch=True)
          | st.sampled_from(["1e2", "1.", ".5", " 1", "\u0661", "0.00", "1_0", True]))
QUANTITIES = (st.integers(-1, 1_000_002) | st.sampled_from([5.0, 5.5, 1e6, 1e7, False])
              | st.from_regex(r"-?0{0,2}[0-9]{1,7}(\.[0-9]{1,2})?", fullmatch=True))


FIELDS = {
    "side": st.sampled_from([*WORDS, 1, -1, 0, 1.0]),
    "quantity": QUANTITIES,
    "price": PRICES,
    "type": st.sampled_from(WORDS) | st.none(),
    "time_in_force": st.sampled_from(WORDS) | st.none(),
    "post_only": st.booleans(),
    "stp": st.sampled_from(WORDS),
    "symbol": st.sampled_from(WORDS),
    "client_order_id": st.none() | st.text(max_size=66),
    "user_id": st.none() | st.sampled_from([
        "bd2597f1-d1c5-4f75-ad87-a677d9948c65", "BD2597F1-D1C5-4F75-AD87-A677D9948C65",
        "bd2597f1", "", "buy", "bd2597f1d1c54f75ad87a677d9948c65",
        "{bd2597f1-d1c5-4f75-ad87-a677d9948c65}"]),
}
LIMIT = {"side": "buy", "quantity": 1, "price": "1.00"}
MARKET = {"side": "sell", "quantity": 1, "type": "market"}


@settings(max_examples=600, derandomize=True)
@example(LIMIT, [("time_in_force", "\u0131oc")])  # a dotless i upper-cases to I
@example(MARKET, [("type", "mar\u212aet")])  # Kelvin sign: lower() makes it "market"
@given(st.sampled_from([LIMIT, MARKET]),
       st.lists(st.sampled_from(sorted(FIELDS)).flatmap(
           lambda name: st.tuples(st.just(name), FIELDS[name])), min_size=1, max_size=3))
def test_place_document_allows_exactly_what_placing_accepts(
        base: dict[str, Any], changes: list[tuple[str, Any]]) -> None:
    body = base | dict(changes)  # a valid order with one to three fields changed
    raw = msgspec.json.encode(body)
    accepted = _accepted(lambda: place_command(decode(raw, PlaceBody), INSTRUMENTS, None, None))
    assert PLACE.is_valid(body) == accepted


@settings(max_examples=300, derandomize=True)
@given(st.fixed_dictionaries({}, optional={"price": PRICES, "quantity": QUANTITIES}))
def test_modify_document_allows_exactly_what_modifying_accepts(body: dict[str, Any]) -> None:
    raw = msgspec.json.encode(body)
    accepted = _accepted(lambda: modify_command(
        "bd2597f1-d1c5-4f75-ad87-a677d9948c65", decode(raw, ModifyBody), DEFAULT_INSTRUMENT))
    assert MODIFY.is_valid(body) == accepted


AMOUNTS = (st.integers(-1, 10**12 + 1) | st.sampled_from([0.5, 1e6, 1e12, -0.5, True])
           | st.from_regex(r"-?0{0,2}[0-9]{1,13}(\.[0-9]{1,8})?", fullmatch=True)
           | st.sampled_from(["1e2", "1.", ".5", " 1", "0.000000", "0.0000001", "1.0000000"]))


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.fixed_dictionaries({"asset": st.sampled_from(["USD", "DEFAULT", "usd", "U S D"]),
                              "amount": AMOUNTS,
                              "transfer_id": st.text(max_size=66)}))
def test_transfer_document_allows_exactly_what_transferring_accepts(
        body: dict[str, Any]) -> None:
    raw = msgspec.json.encode(body)
    accepted = _accepted(lambda: transfer_command(
        "bd2597f1-d1c5-4f75-ad87-a677d9948c65", decode(raw, TransferBody), ["USD", "DEFAULT"],
        withdrawal=False))
    valid = TRANSFER.is_valid(body) and body["asset"] in ("USD", "DEFAULT")  # the assets:
    assert valid == accepted  # the document names the default instrument's as examples
