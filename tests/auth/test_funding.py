"""Funding on, through the API with auth: two funded traders trade the README flow and
every balance, hold, fee and ledger posting reads back to the last unit.

DEFAULT here charges 10 bp to makers and 20 bp to takers. Amounts are asset units of
10**-6: a buy of 100 at 150.25 holds 100 x (150.25 + 0.3005) = 15055.05 USD.
"""

from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from common.config import Settings
from svc_orders import api as orders_api
from tests.auth.conftest import Caller, Exchange, answer
from tests.helpers import eventually


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    path = tmp_path / "funded.json"
    path.write_bytes(msgspec.json.encode([{"symbol": "DEFAULT", "quote": "USD",
                                           "maker_fee_bps": 10, "taker_fee_bps": 20}]))
    return msgspec.structs.replace(settings, funding="on", instruments_file=str(path))


async def transfer(admin: Caller, user_id: str, kind: str, asset: str, amount: str,
                   transfer_id: str) -> tuple[int, Any]:
    """Through svc_trades, which relays it to svc_orders."""
    return await answer(await admin.trades.post(f"/accounts/{user_id}/{kind}/", json={
        "asset": asset, "amount": amount, "transfer_id": transfer_id}))


def balances_of(view: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {b["asset"]: (b["available"], b["held"]) for b in view["balances"]}


async def projected(caller: Caller, path: str, expected: dict[str, tuple[str, str]]) -> None:
    """Wait until svc_trades answers the balances `expected` at `path` (the ledger follows
    the engine by the projection's lag)."""
    async def read() -> bool:
        status, view = await answer(await caller.trades.get(path))
        assert status == 200, view
        assert balances_of(view) == expected
        return True
    await eventually(read)


async def test_funded_traders_through_the_original_examples(exchange: Exchange) -> None:
    ex = exchange
    alice, bob, carol, admin = ex.alice, ex.bob, ex.carol, ex.admin
    # deposits: admin only, idempotent by transfer id
    status, refused = await transfer(alice, alice.user_id, "deposits", "USD", "1", "x")
    assert (status, refused["error"]["code"]) == (403, "PERMISSION_DENIED")
    status, done = await transfer(admin, alice.user_id, "deposits", "USD", "20000", "a1")
    assert status == 201
    assert done == {"transfer_id": "a1", "user_id": alice.user_id, "asset": "USD",
                    "amount": "20000.000000", "balance": {
                        "asset": "USD", "available": "20000.000000", "held": "0.000000"}}
    status, again = await transfer(admin, alice.user_id, "deposits", "USD", "5", "a1")
    assert (status, again) == (200, done)
    status, again = await answer(await admin.orders.post(  # svc_orders takes them too
        f"/accounts/{alice.user_id}/deposits/",
        json={"asset": "USD", "amount": "5", "transfer_id": "a1"}))
    assert (status, again) == (200, done)
    status, _ = await transfer(admin, bob.user_id, "deposits", "DEFAULT", "100", "b1")
    assert status == 201
    status, unknown = await transfer(admin, bob.user_id, "deposits", "XYZ", "1", "b2")
    assert (status, unknown["error"]["code"]) == (400, "UNKNOWN_ASSET")

    # the README flow: a buy holds price x quantity plus the fee at the higher rate
    status, buy = await answer(await alice.orders.post("/orders/", json={
        "side": "buy", "quantity": 100, "price": "150.25"}))
    assert (status, buy["status"]) == (201, "ACTIVE")
    status, sell = await answer(await bob.orders.post("/orders/", json={
        "side": "sell", "quantity": 50, "price": "150.20"}))
    assert (status, sell["status"]) == (201, "FILLED")
    # 50 at 150.25 = 7512.50: alice (maker) pays 7.5125 on top, bob (taker) gets 15.025
    # less; alice's hold for the other 50 stays, the maker fee's difference comes back
    engine = ex.orders.app[orders_api.SEQUENCER].engine
    assert engine.funds is not None
    units = engine.funds.balances
    assert units[(alice.user_id, "USD")] == [4_952_462_500, 7_527_525_000]
    assert units[(alice.user_id, "DEFAULT")] == [50_000_000, 0]
    assert units[(bob.user_id, "USD")] == [7_497_475_000, 0]
    assert units[(bob.user_id, "DEFAULT")] == [50_000_000, 0]
    assert engine.funds.fees["USD"] == 22_537_500

    # projected, while alice's buy holds the 50 it has left
    await projected(alice, "/accounts/me/balances/", {
        "USD": ("4952.462500", "7527.525000"), "DEFAULT": ("50.000000", "0.000000")})

    # modify up: 50 x (150.30 + 0.3006) = 7530.03 held, 2.505 more than before
    order = f"/orders/{buy['order_id']}/"
    status, moved = await answer(await alice.orders.put(order, json={"price": "150.30"}))
    assert (status, moved["price"]) == (200, "150.30")
    status, too_much = await answer(await alice.orders.put(order, json={"quantity": 1000}))
    assert (status, too_much["error"]["code"]) == (409, "INSUFFICIENT_FUNDS")
    status, unfunded = await answer(await carol.orders.post("/orders/", json={
        "side": "buy", "quantity": 1, "price": "1.00"}))
    assert (status, unfunded["status"], unfunded["reject_reason"]) == (
        201, "REJECTED", "INSUFFICIENT_FUNDS")
    status, over = await transfer(admin, bob.user_id, "withdrawals", "USD", "10000", "b3")
    assert (status, over["error"]["code"]) == (409, "INSUFFICIENT_FUNDS")
    status, out = await transfer(admin, bob.user_id, "withdrawals", "USD", "97.475", "b4")
    assert (status, out["balance"]["available"]) == (201, "7400.000000")
    # a sell of 10 @ 151 rests above alice's bid, holding 10 of bob's 50 DEFAULT
    status, ask = await answer(await bob.orders.post("/orders/", json={
        "side": "sell", "quantity": 10, "price": "151.00"}))
    assert (status, ask["status"]) == (201, "ACTIVE")
    assert units[(bob.user_id, "DEFAULT")] == [40_000_000, 10_000_000]

    # both holds open, as each trader reads them back
    await projected(alice, "/accounts/me/balances/", {
        "USD": ("4949.957500", "7530.030000"), "DEFAULT": ("50.000000", "0.000000")})
    await projected(bob, "/accounts/me/balances/", {
        "USD": ("7400.000000", "0.000000"), "DEFAULT": ("40.000000", "10.000000")})

    # both cancelled: every hold comes back
    status, cancelled = await answer(await bob.orders.delete(f"/orders/{ask['order_id']}/"))
    assert (status, cancelled["status"]) == (200, "CANCELLED")
    assert units[(bob.user_id, "DEFAULT")] == [50_000_000, 0]
    status, _ = await answer(await alice.orders.delete(order))
    assert status == 200

    # the ledger, projected: the same balances, to the last unit
    await projected(alice, "/accounts/me/balances/", {
        "USD": ("12479.987500", "0.000000"), "DEFAULT": ("50.000000", "0.000000")})
    await projected(admin, f"/accounts/{bob.user_id}/balances/", {
        "USD": ("7400.000000", "0.000000"), "DEFAULT": ("50.000000", "0.000000")})
    status, _ = await answer(await alice.trades.get(f"/accounts/{bob.user_id}/balances/"))
    assert status == 403
    status, page = await answer(await alice.trades.get("/accounts/me/ledger/?page_size=3"))
    assert status == 200
    # newest first: the cancel's release, the modify's hold, the trade's release of the
    # maker fee's difference, the buyer's fee and the two sides of the trade, the hold
    # of the buy, the deposit
    assert (page["pagination"]["total_count"], page["pagination"]["has_next"]) == (8, True)
    status, rest = await answer(await alice.trades.get(
        f"/accounts/me/ledger/?cursor={page['pagination']['next_cursor']}&page_size=3"))
    assert status == 200
    status, last = await answer(await alice.trades.get(
        f"/accounts/me/ledger/?cursor={rest['pagination']['next_cursor']}&page_size=3"))
    postings = page["postings"] + rest["postings"] + last["postings"]
    assert [p["kind"] for p in postings] == [
        "release", "hold", "release", "fee", "trade", "trade", "hold", "deposit"]
    assert [(p["asset"], p["amount"], p["debit"], p["credit"]) for p in postings[3:6]] == [
        ("USD", "7.512500", f"user:{alice.user_id}:held", "fees"),
        ("DEFAULT", "50.000000", f"user:{bob.user_id}:held",
         f"user:{alice.user_id}:available"),
        ("USD", "7512.500000", f"user:{alice.user_id}:held",
         f"user:{bob.user_id}:available")]

    # bob's, through the admin route, two cursor pages of four: newest first, the
    # cancel's release and the hold of the sell of 10, the withdrawal, the seller's fee
    # and his two sides of the trade, the hold of the sell of 50, the deposit
    bobs = f"/accounts/{bob.user_id}/ledger/"
    status, first = await answer(await admin.trades.get(f"{bobs}?page_size=4"))
    assert (status, first["user_id"]) == (200, bob.user_id)
    assert (first["pagination"]["total_count"], first["pagination"]["has_next"]) == (8, True)
    status, second = await answer(await admin.trades.get(
        f"{bobs}?cursor={first['pagination']['next_cursor']}&page_size=4"))
    assert (status, second["pagination"]["has_next"]) == (200, False)
    status, whole = await answer(await admin.trades.get(f"{bobs}?page_size=100"))
    assert status == 200
    paged = first["postings"] + second["postings"]
    assert paged == whole["postings"]  # none twice, none missing, in the same order
    assert len({p["posting_id"] for p in paged}) == 8
    held, available = f"user:{bob.user_id}:held", f"user:{bob.user_id}:available"
    trade = sell["fills"][0]["trade_id"]
    assert [(p["kind"], p["asset"], p["amount"], p["debit"], p["credit"], p["reference"])
            for p in paged] == [
        ("release", "DEFAULT", "10.000000", held, available, ask["order_id"]),
        ("hold", "DEFAULT", "10.000000", available, held, ask["order_id"]),
        ("withdrawal", "USD", "97.475000", available, "external", "b4"),
        ("fee", "USD", "15.025000", available, "fees", trade),
        ("trade", "DEFAULT", "50.000000", held, f"user:{alice.user_id}:available", trade),
        ("trade", "USD", "7512.500000", f"user:{alice.user_id}:held", available, trade),
        ("hold", "DEFAULT", "50.000000", available, held, sell["order_id"]),
        ("deposit", "DEFAULT", "100.000000", "external", available, "b1")]
    status, _ = await answer(await bob.trades.get(f"/accounts/{alice.user_id}/ledger/"))
    assert status == 403

    # double entry: per asset the accounts sum to zero, users and fees to net transfers,
    # and no posting is there twice
    conn = await asyncpg.connect(ex.settings.pg_dsn)
    try:
        sums = {row["asset"]: (row["total"], row["outside"]) for row in await conn.fetch(
            "SELECT asset, sum(balance) AS total, "
            "sum(balance) FILTER (WHERE account = 'external') AS outside "
            "FROM accounts GROUP BY asset")}
        assert {asset: (str(total), str(outside)) for asset, (total, outside) in
                sums.items()} == {"USD": ("0.000000", "-19902.525000"),
                                  "DEFAULT": ("0.000000", "-100.000000")}
        assert await conn.fetchval(
            "SELECT count(*) = count(DISTINCT (symbol, seq, leg)) FROM postings")
    finally:
        await conn.close()
