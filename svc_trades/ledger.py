"""The double-entry ledger: the journal's balance events as postings, and its reads.

Each movement of money is one posting: `amount` of an asset debited from one account
and credited to another (`migrations/0004_ledger.sql` names the accounts). A posting is
keyed by its journal position (instrument, sequence, leg: the n-th posting of that
batch), and the write inserts the postings and moves the account balances in ONE
statement that skips postings already there, inside the projection's transaction: a
replayed batch posts nothing twice and moves no balance twice.

The events and their postings:
- deposit: external -> available; withdrawal: available -> external (`reference`: the
  transfer id);
- hold: available -> held; release: held -> available (the order id);
- a trade (the trade id): the buyer's held quote -> the seller's available (the trade's
  amount); the seller's held base -> the buyer's available; the buyer's held quote ->
  fees (buyer's fee); the seller's available quote -> fees (seller's fee).
Postings of a zero amount (a fee of 0) are left out.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

import asyncpg

from common.accountviews import BalancesView, BalanceView, LedgerList, PostingView
from common.assets import ASSET_DECIMALS, to_decimal
from common.messages import (
    Event,
    EventBatch,
    FundsExchanged,
    FundsHeld,
    FundsReleased,
    FundsTransferred,
    OrderAccepted,
    OrderRejected,
)
from common.queries import PageRequest
from common.views import timestamp, trade_id
from svc_trades.reading import Where, fetch_page, read_only
from svc_trades.rows import (
    Int4,
    Row,
    arrays,
    columns,
    micros,
    storable,
    storable_or_none,
    unnest,
)

EXTERNAL, FEES = "external", "fees"
AVAILABLE, HELD = "available", "held"
LEDGER_EVENTS = (FundsTransferred, FundsHeld, FundsReleased, FundsExchanged)


def batch_time(batch: EventBatch) -> int:
    """When the batch's command ran: its first event says (nanoseconds)."""
    first = batch.events[0]
    if isinstance(first, OrderAccepted | OrderRejected):
        return first.order.timestamp
    return int(getattr(first, "timestamp", 0))


def account(user_id: str | None, part: str) -> str:
    return f"user:{user_id}:{part}"


class PostingRow(Row, frozen=True, gc=False):
    symbol: str
    seq: int
    leg: Int4
    asset: str
    amount: Decimal
    debit: str
    credit: str
    debit_owner: str | None
    credit_owner: str | None
    kind: str
    reference: str
    created_at: datetime


class Poster:
    """Turns one batch's balance events into posting rows, legs numbered in order."""

    def __init__(self, batch: EventBatch, at: datetime) -> None:
        self.batch, self.at = batch, at
        self.rows: list[PostingRow] = []

    def post(self, event: Event) -> None:
        match event:
            case FundsTransferred():
                user = account(event.user_id, AVAILABLE)
                debit, credit = (user, EXTERNAL) if event.withdrawal else (EXTERNAL, user)
                self._add(event.asset, event.amount, debit, credit,
                          "withdrawal" if event.withdrawal else "deposit", event.transfer_id)
            case FundsHeld():
                self._add(event.asset, event.amount, account(event.user_id, AVAILABLE),
                          account(event.user_id, HELD), "hold", event.order_id)
            case FundsReleased():
                self._add(event.asset, event.amount, account(event.user_id, HELD),
                          account(event.user_id, AVAILABLE), "release", event.order_id)
            case FundsExchanged():
                trade = trade_id(self.batch.symbol, event.trade_no)
                buyer, seller = event.buyer_user_id, event.seller_user_id
                self._add(event.quote, event.amount, account(buyer, HELD),
                          account(seller, AVAILABLE), "trade", trade)
                self._add(event.base, event.base_amount, account(seller, HELD),
                          account(buyer, AVAILABLE), "trade", trade)
                self._add(event.quote, event.buyer_fee, account(buyer, HELD), FEES, "fee",
                          trade)
                self._add(event.quote, event.seller_fee, account(seller, AVAILABLE), FEES,
                          "fee", trade)

    def _add(self, asset: str, amount: int, debit: str, credit: str, kind: str,
             reference: str) -> None:
        if amount:
            self.rows.append(PostingRow(
                symbol=self.batch.symbol, seq=self.batch.seq, leg=Int4(len(self.rows)),
                asset=storable(asset), amount=to_decimal(amount), debit=storable(debit),
                credit=storable(credit), debit_owner=_owner(debit),
                credit_owner=_owner(credit), kind=kind, reference=storable(reference),
                created_at=self.at))


def _owner(name: str) -> str | None:
    if not name.startswith("user:"):
        return None
    return storable_or_none(name[len("user:"):name.rindex(":")])


# ---- the write (inside the projection's transaction) ---------------------------------

WRITE = f"""
WITH new AS (
    INSERT INTO postings ({", ".join(columns(PostingRow))})
    SELECT * FROM {unnest(PostingRow)}
    ON CONFLICT (symbol, seq, leg) DO NOTHING
    RETURNING asset, amount, debit, credit, debit_owner, credit_owner
), moves AS (
    SELECT asset, credit AS account, credit_owner AS owner, amount FROM new
    UNION ALL
    SELECT asset, debit, debit_owner, -amount FROM new
)
INSERT INTO accounts (asset, account, owner, balance)
SELECT asset, account, owner, sum(amount) FROM moves GROUP BY asset, account, owner
ON CONFLICT (asset, account) DO UPDATE SET balance = accounts.balance + EXCLUDED.balance"""


async def write(conn: asyncpg.Connection, rows: list[PostingRow]) -> None:
    """Post `rows` and move their accounts; postings already there change nothing."""
    if rows:
        await conn.execute(WRITE, *arrays(rows))


# ---- reads ------------------------------------------------------------------------------

_PLACES = Decimal(1).scaleb(-ASSET_DECIMALS)


def amount_text(value: Decimal) -> str:
    return f"{value.quantize(_PLACES):f}"


async def balances(pool: asyncpg.Pool, user_id: str) -> BalancesView:
    """The user's available and held per asset, as the projection has them."""
    async with read_only(pool) as conn:
        rows = await conn.fetch("SELECT asset, account, balance FROM accounts "
                                "WHERE owner = $1 ORDER BY asset", user_id)
    found: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for row in rows:
        found[row["asset"]][row["account"].rsplit(":", 1)[1]] = row["balance"]
    zero = Decimal(0)
    return BalancesView(user_id=user_id, balances=[
        BalanceView(asset=asset, available=amount_text(parts.get(AVAILABLE, zero)),
                    held=amount_text(parts.get(HELD, zero)))
        for asset, parts in found.items()])


async def postings(pool: asyncpg.Pool, user_id: str, page: PageRequest) -> LedgerList:
    """The user's postings, newest first."""
    where = Where()
    where.add("(debit_owner = {0} OR credit_owner = {0})", user_id)
    async with read_only(pool) as conn:
        rows, pagination = await fetch_page(
            conn, "postings", "asset, amount, debit, credit, kind, reference, created_at, "
            "symbol, seq, leg", where, page, "ledger")
    return LedgerList(user_id=user_id, pagination=pagination, postings=[PostingView(
        posting_id=row["id"], asset=row["asset"], amount=amount_text(row["amount"]),
        debit=row["debit"], credit=row["credit"], kind=row["kind"],
        reference=row["reference"], timestamp=timestamp(micros(row["created_at"]) * 1000),
        symbol=row["symbol"], seq=row["seq"], leg=row["leg"]) for row in rows])
