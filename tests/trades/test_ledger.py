"""The ledger is the journal's balance events, posted exactly once: projected with a
projector killed anywhere, then replayed whole, it ends balanced (per asset the accounts
sum to zero, the users' and the fee account's equal deposits minus withdrawals) and with
exactly the engine's balances, no posting twice."""

import asyncpg
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext

from tests.trades.journal import (
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
