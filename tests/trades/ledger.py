"""The ledger's checks, shared by the tests that project funded journals: the accounts in
PostgreSQL are exactly the engine's balances, per asset they sum to zero, no posting is
there twice, and every account is the sum of its postings (in SQL)."""

from decimal import Decimal

import asyncpg

from common.assets import to_decimal
from svc_orders.matching import Exchange


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
    """The ledger is double entry and holds exactly the engine's balances."""
    assert {key: value for key, value in (await accounts(pool)).items() if value} == (
        engine_accounts(engine))
    await assert_double_entry(pool)


async def assert_double_entry(pool: asyncpg.Pool) -> None:
    """Per asset the accounts sum to zero, no posting is there twice, and every account
    is the sum of its postings: true of any prefix of the journal the ledger holds."""
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
