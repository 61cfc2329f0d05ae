"""All of svc_trades' SQL: the projection's batch writes, trade queries, settlement.

The projection writes new rows by binary COPY and changes existing orders with one
`UPDATE ... FROM unnest(arrays)` per batch: a batch of any size is a few statements.
Rows arrive ready-made from `svc_trades.changes` (prices as Decimals on the instrument's
grid, NUMERIC and never float; times as datetimes at microsecond precision).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from common.history import (
    ORDER_COLUMNS,
    UNAVAILABLE,
    PageRequest,
    Pagination,
    Where,
    fetch_page,
    instrument_of,
    micros,
    order_state,
    projection_position,
    snapshot,
    units,
)
from common.http import ApiError
from common.instruments import Instrument
from common.messages import Side, TradeExecuted
from common.orderstate import ACTIVE_STATUSES, OrderState
from common.views import TradeView, timestamp, trade_view

Row = tuple[Any, ...]


TRADE_COPY_COLUMNS = ("trade_id", "symbol", "trade_no", "seq", "price", "quantity",
                      "buy_order_id", "sell_order_id", "buyer_user_id", "seller_user_id",
                      "aggressor_side", "execution_timestamp")
ORDER_COPY_COLUMNS = ("order_id", "symbol", "side", "type", "time_in_force", "post_only",
                      "stp", "user_id", "client_order_id", "price", "quantity",
                      "remaining_quantity", "traded_quantity", "cancelled_quantity",
                      "notional", "status", "cancel_reason", "reject_reason", "created_at",
                      "updated_at", "seq")
_ORDER_ARRAYS = ("text", "text", "text", "text", "text", "boolean", "text", "text", "text",
                 "numeric", "bigint", "bigint", "bigint", "bigint", "numeric", "text", "text",
                 "text", "timestamptz", "timestamptz", "bigint")
_TRADE_ARRAYS = ("uuid", "text", "bigint", "bigint", "numeric", "bigint", "text", "text",
                 "text", "text", "text", "timestamptz")


def _unnest(columns: Sequence[str], types: Sequence[str]) -> str:
    arrays = ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(types, 1))
    return f"unnest({arrays}) AS u({', '.join(columns)})"


# The careful path, for rows that may exist already (see `insert`).
INSERT_TRADES = f"""
INSERT INTO trades ({", ".join(TRADE_COPY_COLUMNS)})
SELECT * FROM {_unnest(TRADE_COPY_COLUMNS, _TRADE_ARRAYS)}
ON CONFLICT (trade_id) DO NOTHING"""

UPSERT_ORDERS = f"""
INSERT INTO orders ({", ".join(ORDER_COPY_COLUMNS)})
SELECT * FROM {_unnest(ORDER_COPY_COLUMNS, _ORDER_ARRAYS)}
ON CONFLICT (order_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in ORDER_COPY_COLUMNS[1:])}
WHERE orders.seq < EXCLUDED.seq"""

_UPDATED = ("order_id", "price", "quantity", "remaining_quantity", "traded_quantity",
            "cancelled_quantity", "notional", "status", "cancel_reason", "reject_reason",
            "updated_at", "seq")

# An order only moves forward in the journal.
UPDATE_ORDERS = f"""
UPDATE orders AS o SET {", ".join(f"{c} = u.{c}" for c in _UPDATED[1:])}
FROM {_unnest(_UPDATED, ("text", "numeric", "bigint", "bigint", "bigint", "bigint",
                         "numeric", "text", "text", "text", "timestamptz", "bigint"))}
WHERE o.order_id = u.order_id AND o.seq < u.seq"""

LIVE = tuple(status.value for status in ACTIVE_STATUSES)

TRADE_COLUMNS = ("trade_id, symbol, trade_no, seq, price, quantity, buy_order_id, "
                 "sell_order_id, buyer_user_id, seller_user_id, aggressor_side, "
                 "execution_timestamp, is_settled, settlement_timestamp")


# ---- the projection's writes (inside the caller's transaction) ----------------------


async def insert(conn: asyncpg.Connection, orders: Sequence[Row], trades: Sequence[Row],
                 careful: bool = False) -> None:
    """New orders and trades by COPY, or `careful`ly where some may exist already.

    Only a journal that reuses an order id (or holds a trade twice) needs the careful
    path: trades keyed by their stable id, orders replaced only by a later state.
    """
    if careful:
        if trades:
            await conn.execute(INSERT_TRADES, *zip(*trades, strict=True))
        if orders:
            await conn.execute(UPSERT_ORDERS, *zip(*orders, strict=True))
        return
    if trades:
        await conn.copy_records_to_table("trades", records=trades, columns=TRADE_COPY_COLUMNS)
    if orders:
        await conn.copy_records_to_table("orders", records=orders, columns=ORDER_COPY_COLUMNS)


async def update_orders(conn: asyncpg.Connection, rows: Sequence[Row]) -> None:
    if rows:
        await conn.execute(UPDATE_ORDERS, *zip(*rows, strict=True))


async def live_orders(conn: asyncpg.Connection,
                      instruments: Mapping[str, Instrument]) -> dict[str, OrderState]:
    """Every order still live: the only ones a later journal event can change."""
    rows = await conn.fetch(f"SELECT {ORDER_COLUMNS} FROM orders WHERE status = ANY($1)",
                            list(LIVE))
    return {row["order_id"]: order_state(row, instruments) for row in rows}


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


def trade_of(row: Mapping[str, Any], instruments: Mapping[str, Instrument]) -> TradeView:
    """A stored trade through the same `trade_view` the live feeds use."""
    instrument = instrument_of(instruments, row["symbol"])
    event = TradeExecuted(
        seq=row["seq"], timestamp=micros(row["execution_timestamp"]) * 1000,
        symbol=row["symbol"], trade_no=row["trade_no"], price=units(row["price"], instrument),
        quantity=row["quantity"], buy_order_id=row["buy_order_id"],
        sell_order_id=row["sell_order_id"], aggressor_side=Side(row["aggressor_side"]),
        buyer_user_id=row["buyer_user_id"], seller_user_id=row["seller_user_id"])
    view = trade_view(event, instrument)
    view.is_settled = row["is_settled"]
    settled_at = row["settlement_timestamp"]
    view.settlement_timestamp = None if settled_at is None else timestamp(
        micros(settled_at) * 1000)
    return view


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
    async with snapshot(pool) as conn:
        rows, pagination = await fetch_page(conn, "trades", TRADE_COLUMNS, where, page,
                                            "trades")
        as_of_seq = await projection_position(conn)
    return TradeList(trades=[trade_of(row, instruments) for row in rows],
                     pagination=pagination, as_of_seq=as_of_seq)


async def get_trade(pool: asyncpg.Pool, trade: str,
                    instruments: Mapping[str, Instrument]) -> TradeView | None:
    async with snapshot(pool) as conn:
        row = await conn.fetchrow(f"SELECT {TRADE_COLUMNS} FROM trades WHERE trade_id = $1",
                                  trade)
    return None if row is None else trade_of(row, instruments)


@contextlib.asynccontextmanager
async def _writing(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    try:
        async with pool.acquire(timeout=2.0) as conn, conn.transaction():
            yield conn
    except UNAVAILABLE as error:
        raise ApiError(503, "UNAVAILABLE", "the projection database is unavailable",
                       {"reason": type(error).__name__}) from None


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
