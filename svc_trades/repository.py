"""All of svc_trades' SQL: the projection's batch writes, trade queries, settlement.

The projection writes new rows by binary COPY and changes existing orders with one
`UPDATE ... FROM unnest(arrays)` per batch: a batch of any size is a few statements.
Rows arrive ready-made from `svc_trades.changes`, typed and named by `svc_trades.rows`.
The order read model's queries are `svc_trades.readmodel`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime

import asyncpg
import msgspec

from common.instruments import Instrument
from common.listing import Pagination
from common.orderstate import ACTIVE_STATUSES, OrderState
from common.queries import PageRequest
from common.views import TradeView
from svc_trades.reading import (
    ACQUIRE_TIMEOUT,
    UNAVAILABLE,
    Where,
    fetch_page,
    read_only,
    unavailable,
)
from svc_trades.rows import (
    ORDER_COLUMNS,
    TRADE_COLUMNS,
    OrderRow,
    OrderUpdate,
    TradeRow,
    arrays,
    columns,
    order_state,
    trade_of,
    unnest,
    values,
)

# The careful path, for rows that may exist already (see `insert`).
INSERT_TRADES = f"""
INSERT INTO trades ({", ".join(columns(TradeRow))})
SELECT * FROM {unnest(TradeRow)}
ON CONFLICT (trade_id) DO NOTHING"""

UPSERT_ORDERS = f"""
INSERT INTO orders ({ORDER_COLUMNS})
SELECT * FROM {unnest(OrderRow)}
ON CONFLICT (order_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in columns(OrderRow)[1:])}
WHERE orders.seq < EXCLUDED.seq"""

# An order only moves forward in the journal.
UPDATE_ORDERS = f"""
UPDATE orders AS o SET {", ".join(f"{c} = u.{c}" for c in columns(OrderUpdate)[1:])}
FROM {unnest(OrderUpdate)}
WHERE o.order_id = u.order_id AND o.seq < u.seq"""

LIVE = tuple(status.value for status in ACTIVE_STATUSES)


# ---- the projection's writes (inside the caller's transaction) ----------------------


async def insert(conn: asyncpg.Connection, orders: Sequence[OrderRow],
                 trades: Sequence[TradeRow], careful: bool = False) -> None:
    """New orders and trades by COPY, or `careful`ly where some may exist already.

    Only a journal that reuses an order id (or holds a trade twice) needs the careful
    path: trades keyed by their stable id, orders replaced only by a later state.
    """
    if careful:
        if trades:
            await conn.execute(INSERT_TRADES, *arrays(trades))
        if orders:
            await conn.execute(UPSERT_ORDERS, *arrays(orders))
        return
    if trades:
        await conn.copy_records_to_table("trades", records=map(values, trades),
                                         columns=columns(TradeRow))
    if orders:
        await conn.copy_records_to_table("orders", records=map(values, orders),
                                         columns=columns(OrderRow))


async def update_orders(conn: asyncpg.Connection, rows: Sequence[OrderUpdate]) -> None:
    if rows:
        await conn.execute(UPDATE_ORDERS, *arrays(rows))


async def live_orders(conn: asyncpg.Connection,
                      instruments: Mapping[str, Instrument]) -> dict[str, OrderState]:
    """Every order still live: the only ones a later journal event can change."""
    rows = await conn.fetch(f"SELECT {ORDER_COLUMNS} FROM orders WHERE status = ANY($1)",
                            list(LIVE))
    return {row["order_id"]: order_state(row, instruments) for row in rows}


async def projection_position(conn: asyncpg.Connection) -> dict[str, int]:
    """The last projected sequence number of each instrument."""
    return {row["symbol"]: row["seq"]
            for row in await conn.fetch("SELECT symbol, seq FROM projection_symbols")}


async def consumer_position(conn: asyncpg.Connection, consumer: str) -> int:
    """The stream sequence up to which `consumer` has projected (0: nothing yet)."""
    value = await conn.fetchval(
        "SELECT stream_seq FROM projection_consumers WHERE consumer = $1", consumer)
    return int(value or 0)


async def advance(conn: asyncpg.Connection, consumer: str, expected: int, new: int) -> bool:
    """Move the consumer's position from `expected` to `new`; False if it had moved."""
    moved = await conn.fetchval("""
        INSERT INTO projection_consumers (consumer, stream_seq) VALUES ($1, $2)
        ON CONFLICT (consumer) DO UPDATE SET stream_seq = EXCLUDED.stream_seq
        WHERE projection_consumers.stream_seq = $3
        RETURNING stream_seq""", consumer, new, expected)
    return moved is not None


async def set_symbol_positions(conn: asyncpg.Connection, seqs: Mapping[str, int]) -> None:
    if seqs:
        await conn.execute("""
            INSERT INTO projection_symbols (symbol, seq)
            SELECT * FROM unnest($1::text[], $2::bigint[])
            ON CONFLICT (symbol) DO UPDATE SET seq = EXCLUDED.seq""",
            list(seqs), list(seqs.values()))


async def park(conn: asyncpg.Connection,
               messages: Sequence[tuple[int, str, str, bytes]]) -> None:
    """Keep (stream_seq, subject, reason, data) of messages that cannot be projected."""
    if messages:
        await conn.execute("""
            INSERT INTO parked_messages (stream_seq, subject, reason, data)
            SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bytea[])
            ON CONFLICT (stream_seq) DO NOTHING""", *zip(*messages, strict=True))


# ---- trades as users see them --------------------------------------------------------


class TradeFilters(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str | None = None
    order_id: str | None = None  # either side's order
    user_id: str | None = None  # buyer or seller
    settled: bool | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


class TradeList(msgspec.Struct, kw_only=True):
    trades: list[TradeView]
    pagination: Pagination
    as_of_seq: dict[str, int]


async def list_trades(pool: asyncpg.Pool, filters: TradeFilters, page: PageRequest,
                      instruments: Mapping[str, Instrument]) -> TradeList:
    where = Where()
    if filters.symbol is not None:
        where.add("symbol = {0}", filters.symbol)
    if filters.order_id is not None:
        where.add("(buy_order_id = {0} OR sell_order_id = {0})", filters.order_id)
    if filters.user_id is not None:
        where.add("(buyer_user_id = {0} OR seller_user_id = {0})", filters.user_id)
    if filters.settled is not None:
        where.require("is_settled" if filters.settled else "NOT is_settled")
    if filters.since is not None:
        where.add("execution_timestamp >= {0}", filters.since)
    if filters.until is not None:
        where.add("execution_timestamp < {0}", filters.until)
    async with read_only(pool) as conn:
        rows, pagination = await fetch_page(conn, "trades", TRADE_COLUMNS, where, page,
                                            "trades")
        as_of_seq = await projection_position(conn)
    return TradeList(trades=[trade_of(row, instruments) for row in rows],
                     pagination=pagination, as_of_seq=as_of_seq)


async def get_trade(pool: asyncpg.Pool, trade: str,
                    instruments: Mapping[str, Instrument]) -> TradeView | None:
    async with read_only(pool) as conn:
        row = await conn.fetchrow(f"SELECT {TRADE_COLUMNS} FROM trades WHERE trade_id = $1",
                                  trade)
    return None if row is None else trade_of(row, instruments)


@contextlib.asynccontextmanager
async def _writing(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    try:
        async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            yield conn
    except UNAVAILABLE as error:
        raise unavailable(error) from None


async def settle(pool: asyncpg.Pool, trade: str, at: datetime,
                 instruments: Mapping[str, Instrument]) -> tuple[TradeView | None, bool]:
    """Settle at `at` unless already settled: (the settled trade, whether it exists).

    The row lock serialises concurrent settles; the loser re-reads `is_settled`.
    """
    async with _writing(pool) as conn:
        row = await conn.fetchrow(f"""
            UPDATE trades SET is_settled = true, settlement_timestamp = $2
            WHERE trade_id = $1 AND NOT is_settled RETURNING {TRADE_COLUMNS}""", trade, at)
        if row is not None:
            return trade_of(row, instruments), True
        exists = await conn.fetchval("SELECT true FROM trades WHERE trade_id = $1", trade)
    return None, bool(exists)
