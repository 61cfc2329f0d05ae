"""The ledger is the journal's balance events, posted exactly once: projected with a
projector killed anywhere, then replayed whole, it ends balanced (per asset the accounts
sum to zero, the users' and the fee account's equal deposits minus withdrawals) and with
exactly the engine's balances, no posting twice. With auth off there is no caller
(`/accounts/me/...` is 404) and any user's balances and ledger answer anyone; a ledger
read by cursor pages misses nothing and repeats nothing, even as postings arrive."""

from typing import Any

import asyncpg
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext

from tests.helpers import AppClient
from tests.trades.journal import (
    U1,
    caught_up,
    funded_batches,
    projected_with_stops,
    projecting,
    publish,
    table,
)
from tests.trades.ledger import accounts, assert_balanced


async def test_killed_anywhere_and_replayed_the_ledger_posts_once(
        pool: asyncpg.Pool, nc: Nats, js: JetStreamContext) -> None:
    batches, engine = funded_batches(400, seed=5)
    await publish(js, batches)
    await projected_with_stops(pool, nc, js, (10, 60, 200))
    await assert_balanced(pool, engine)
    kinds = {row["kind"] for row in await table(pool, "postings")}
    assert kinds == {"deposit", "withdrawal", "hold", "release", "trade", "fee"}

    before = (await table(pool, "postings"), await accounts(pool))
    await pool.execute("UPDATE projection_consumers SET stream_seq = 0")  # replay it all
    await pool.execute("DELETE FROM projection_symbols")  # and every batch again
    async with projecting(pool, nc, batch=50):
        await caught_up(pool, js)
    assert (await table(pool, "postings"), await accounts(pool)) == before


def units_text(units: int) -> str:
    """Asset units (10**-6) as the API writes amounts: six places."""
    return f"{units // 10**6}.{units % 10**6:06d}"


async def answer(trades: AppClient, path: str) -> tuple[int, Any]:
    async with await trades.get(path) as response:
        return response.status, await response.json()


async def test_with_auth_off_me_is_404_and_any_user_reads_by_cursor(
        trades: AppClient, pool: asyncpg.Pool, js: JetStreamContext) -> None:
    batches, engine = funded_batches(400, seed=5)
    await publish(js, batches[:250])
    await caught_up(pool, js)
    for path in ("/accounts/me/balances/", "/accounts/me/ledger/"):
        status, body = await answer(trades, path)
        assert (status, body["error"]["code"]) == (404, "ACCOUNT_NOT_FOUND"), path

    # U1's ledger, newest first, read by cursor while the rest of the journal is
    # projected: the pages are exactly U1's postings as of the first page, each once
    mine = ("SELECT id FROM postings WHERE debit LIKE $1 OR credit LIKE $1 "
            "ORDER BY id DESC")
    owned = f"user:{U1}:%"
    expected = [row["id"] for row in await pool.fetch(mine, owned)]
    status, page = await answer(trades, f"/accounts/{U1}/ledger/?page_size=40")
    assert (status, page["user_id"]) == (200, U1)
    assert page["pagination"]["total_count"] == len(expected) > 80  # three pages or more
    await publish(js, batches[250:])
    await caught_up(pool, js)
    assert len(await pool.fetch(mine, owned)) > len(expected)  # U1's ledger grew meanwhile
    read = [posting["posting_id"] for posting in page["postings"]]
    while page["pagination"]["has_next"]:
        status, page = await answer(trades, f"/accounts/{U1}/ledger/?page_size=40"
                                    f"&cursor={page['pagination']['next_cursor']}")
        assert status == 200
        read += [posting["posting_id"] for posting in page["postings"]]
    assert read == expected

    # and U1's balances are the engine's, to the last unit
    status, view = await answer(trades, f"/accounts/{U1}/balances/")
    funds = engine.funds
    assert funds is not None
    assert (status, view) == (200, {"user_id": U1, "balances": [
        {"asset": asset, "available": units_text(available), "held": units_text(held)}
        for (user, asset), (available, held) in sorted(funds.balances.items())
        if user == U1]})
