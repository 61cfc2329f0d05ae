"""The original system's README examples 1 to 9 with auth on: two traders each act for
themselves through their own keys, and an admin settles."""

from typing import Any

from tests.auth.conftest import Exchange, answer
from tests.helpers import eventually


async def test_two_traders_and_an_admin_through_the_original_examples(
        exchange: Exchange) -> None:
    ex = exchange
    alice, bob, admin = ex.alice, ex.bob, ex.admin
    # 1-2: place a buy and a sell; the user is the key's (the body may name it too).
    status, buy = await answer(await alice.orders.post("/orders/", json={
        "side": "buy", "quantity": 100, "price": 150.25, "user_id": alice.user_id}))
    assert (status, buy["status"], buy["user_id"]) == (201, "ACTIVE", alice.user_id)
    status, sell = await answer(await bob.orders.post("/orders/", json={
        "side": "sell", "quantity": 50, "price": 150.20}))
    assert (status, sell["status"], sell["user_id"]) == (201, "FILLED", bob.user_id)
    [fill] = sell["fills"]
    # A fill names the caller's own side only, never the counterparty.
    assert (fill["buyer_user_id"], fill["seller_user_id"]) == (None, bob.user_id)
    order = f"/orders/{buy['order_id']}/"
    # 3-5: get, modify, cancel one's own order.
    status, now = await answer(await alice.orders.get(order))
    assert (status, now["status"], now["remaining_quantity"]) == (200, "PARTIALLY_FILLED", 50)
    status, moved = await answer(await alice.orders.put(order, json={"price": 150.30}))
    assert (status, moved["price"]) == (200, "150.30")
    status, _ = await answer(await bob.orders.put(order, json={"price": 1}))
    assert status == 404
    # 6: listings (from the projection, so eventually) hold one's own orders only.
    async def listed(caller: Any, path: str) -> list[str] | None:
        status, listing = await answer(await caller.orders.get(path))
        assert status == 200
        return [row["order_id"] for row in listing["orders"]] or None

    assert await eventually(lambda: listed(
        alice, "/orders/?status=PARTIALLY_FILLED&side=buy")) == [buy["order_id"]]
    assert await eventually(lambda: listed(
        bob, f"/orders/?user_id={bob.user_id}")) == [sell["order_id"]]
    assert await listed(bob, "/orders/?page=1&page_size=10") == [sell["order_id"]]
    # 7: the book is public.
    async with ex.trades.get("/orderbook/?depth=10") as response:
        assert response.status == 200
        assert (await response.json())["depth"] == 10
    # 8: trade history, one's own.
    async def trades_of(caller: Any) -> list[dict[str, Any]] | None:
        status, listing = await answer(await caller.trades.get("/trades/?page=1&page_size=20"))
        assert status == 200
        return listing["trades"] or None

    [seen] = await eventually(lambda: trades_of(alice))
    assert seen["trade_id"] == fill["trade_id"]
    assert [row["trade_id"] for row in await eventually(lambda: trades_of(bob))] == [
        fill["trade_id"]]
    status, _ = await answer(await alice.orders.delete(order))
    assert status == 200
    # 9: only an admin settles, once.
    settle = f"/trades/{fill['trade_id']}/settle/"
    status, refused = await answer(await alice.trades.post(settle))
    assert (status, refused["error"]["code"]) == (403, "PERMISSION_DENIED")
    status, settled = await answer(await admin.trades.post(settle))
    assert (status, settled["trade"]["is_settled"]) == (200, True)
    status, again = await answer(await admin.trades.post(settle))
    assert (status, again["error"]["code"]) == (409, "TRADE_ALREADY_SETTLED")
