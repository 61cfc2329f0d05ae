"""The whole path: random commands through svc_orders' API end in PostgreSQL exactly as the
engine and svc_orders' own order store have them, and the book svc_trades answers is
the engine's.

Both services run in this process on one private JetStream and one Redis database:
the projection is compared with svc_orders' answers field by field (same JSON).
"""

from random import Random
from typing import Any

from common.config import Settings
from svc_orders import api as orders_api
from svc_orders.app import create_app as create_orders_app
from tests.helpers import AppClient, eventually
from tests.trades.conftest import MakeClient
from tests.trades.journal import USERS

Json = dict[str, Any]
COMMANDS = 250


def price_of(rng: Random, symbol: str) -> str:
    if symbol == "DEFAULT":
        return f"{rng.randrange(9_990, 10_010) / 100:.2f}"
    return f"{rng.randrange(396, 404) * 0.0025:.4f}"


def request_for(rng: Random, live: list[tuple[str, str]]) -> tuple[str, str, Json | None]:
    """A place, cancel or modify; `live` holds (order id, symbol) of recent resting orders."""
    roll = rng.random()
    if live and roll < 0.15:
        return "DELETE", f"/orders/{rng.choice(live)[0]}/", None
    if live and roll < 0.25:
        order_id, symbol = rng.choice(live)
        return "PATCH", f"/orders/{order_id}/", rng.choice(
            ({"price": price_of(rng, symbol)}, {"quantity": rng.randrange(1, 30) * 5}))
    symbol = rng.choice(("DEFAULT", "ALT"))
    body: Json = {"side": rng.choice(("buy", "sell", 1, -1)), "symbol": symbol,
                  "user_id": rng.choice(USERS), "quantity": rng.randrange(1, 30) * 5}
    if rng.random() < 0.1:
        body["type"] = "market"
    else:
        body["price"] = price_of(rng, symbol)
        body["time_in_force"] = rng.choice(("GTC", "GTC", "IOC", "FOK"))
    if rng.random() < 0.2:
        body["client_order_id"] = f"e2e-{rng.getrandbits(32)}"
    return "POST", "/orders/", body


async def listing(client: AppClient, name: str) -> list[Json]:
    items, cursor = [], None
    while True:
        params = {"page_size": "100"} | ({"cursor": cursor} if cursor else {})
        body = await (await client.get(f"/{name}/", params=params)).json()
        items += body[name]
        cursor = body["pagination"]["next_cursor"]
        if cursor is None:
            return items


async def test_random_commands_through_svc_orders_end_in_postgresql_exactly(
        settings: Settings, aiohttp_client: MakeClient, trades: AppClient) -> None:
    orders = await aiohttp_client(create_orders_app(settings))
    rng = Random(11)
    live: list[tuple[str, str]] = []
    placed: list[str] = []
    fills: list[Json] = []
    for _ in range(COMMANDS):
        method, path, body = request_for(rng, live)
        response = await orders.request(method, path, json=body)
        answer = await response.json()
        if response.status >= 400:
            assert response.status in (404, 409), answer
            continue
        fills += answer.get("fills", [])
        if method == "POST":
            placed.append(answer["order_id"])
        mine = (answer["order_id"], answer["symbol"])
        live = [o for o in live if o != mine] + ([mine] if answer["is_active"] else [])
    assert len(fills) > 30

    engine = orders.app[orders_api.SEQUENCER].engine
    seqs = {symbol: engine.seq(symbol) for symbol in ("DEFAULT", "ALT")}

    async def projected() -> bool:
        body = await (await trades.get("/orders/", params={"page_size": "1"})).json()
        return bool(body["as_of_seq"] == seqs)
    await eventually(projected, timeout=10.0)

    assert await listing(trades, "trades") == fills[::-1]
    by_id = {order["order_id"]: order for order in await listing(trades, "orders")}
    assert sorted(by_id) == sorted(placed)
    for order_id in placed:
        own = await (await orders.get(f"/orders/{order_id}/")).json()
        assert by_id[order_id] == own

    for symbol in seqs:
        bids, asks = engine.depth(symbol, 100)

        async def same_book(symbol: str = symbol) -> bool:
            book = await (await trades.get("/orderbook/", params={"symbol": symbol,
                                                                  "depth": "100"})).json()
            return bool(book["seq"] == seqs[symbol])
        await eventually(same_book)
        book = await (await trades.get("/orderbook/", params={"symbol": symbol,
                                                              "depth": "100"})).json()
        instrument = orders.app[orders_api.INSTRUMENTS][symbol]
        assert [(lv["price"], lv["quantity"], lv["orders"]) for lv in book["bids"]] == [
            (instrument.format_price(p), q, n) for p, q, n in bids]
        assert [(lv["price"], lv["quantity"], lv["orders"]) for lv in book["asks"]] == [
            (instrument.format_price(p), q, n) for p, q, n in asks]
