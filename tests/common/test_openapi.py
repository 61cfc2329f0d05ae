"""The generated OpenAPI documents describe the real answers, and nothing else, and say
exactly which requests the services accept: a body the document allows is one the
validation accepts, and the other way round (property tests against the real code)."""

from typing import Any

import jsonschema
import msgspec
import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import example, given, settings
from hypothesis import strategies as st

from common.http import UUID_TEXT, ApiError, decode, uuid_path
from common.instruments import DEFAULT_INSTRUMENT
from common.listing import MAX_PAGE, MAX_PAGE_SIZE, order_filters
from common.messages import OrderStatus
from common.openapi import document
from common.transfers import TransferBody, transfer_command
from svc_orders import openapi as orders
from svc_orders.requests import ModifyBody, PlaceBody, modify_command, place_command
from svc_trades import openapi as trades
from svc_trades.api import MAX_DEPTH
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
