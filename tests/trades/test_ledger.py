"""The ledger is the journal's balance events, posted exactly once: projected with a
projector killed anywhere, then replayed whole, it ends balanced (per asset the accounts
sum to zero, the users' and the fee account's equal deposits minus withdrawals) and with
exactly the engine's balances, no posting twice."""

from decimal import Decimal

import asyncpg
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext

from common.assets import to_decimal
from svc_orders.matching import Exchange
from tests.trades.journal import (
    caught_up,
    funded_batches,
    projected_with_stops,
    projecting,
    publish,
    table,
)


async def accounts(pool: asyncpg.Pool) -> dict[tuple[str, str], Decimal]:
    return {(row["asset"], row["account"]): row["balance"]
            for row in await pool.fetch("SELECT asset, account, balance FROM accounts")}


def engine_accounts(engine: Exchange) -> dict[tuple[str, str], Decimal]:
    """The engine's balances as the ledger names its accounts (empty ones left out)."""
    funds = engine.funds
    assert funds is not None
    found = {}
    for (user, asset), (available, held) in funds.balances.items():
        for part, amount in (("available", available), ("held", held)):
            found[(asset, f"user:{user}:{part}")] = to_decimal(amount)
    for asset, amount in funds.fees.items():
        found[(asset, "fees")] = to_decimal(amount)
    for asset, amount in funds.net_transfers().items():
        found[(asset, "external")] = -to_decimal(amount)
    return {key: value for key, value in found.items() if value}


async def assert_balanced(pool: asyncpg.Pool, engine: Exchange) -> None:
    assert {key: value for key, value in (await accounts(pool)).items() if value} == (
        engine_accounts(engine))
    unbalanced = await pool.fetch(
        "SELECT asset FROM accounts GROUP BY asset HAVING sum(balance) <> 0")
    assert unbalanced == []
    assert await pool.fetchval(
        "SELECT count(*) = count(DISTINCT (symbol, seq, leg)) FROM postings")
    assert await pool.fetchval(  # every account is the sum of its postings
        "SELECT bool_and(a.balance = coalesce(c.total, 0) - coalesce(d.total, 0)) "
        "FROM accounts a "
        "LEFT JOIN (SELECT asset, credit AS account, sum(amount) AS total FROM postings "
        "           GROUP BY 1, 2) c USING (asset, account) "
        "LEFT JOIN (SELECT asset, debit AS account, sum(amount) AS total FROM postings "
        "           GROUP BY 1, 2) d USING (asset, account)")


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
