"""All of svc_trades' SQL: the projection's batch writes, trade queries, settlement.

The projection writes each batch with a few statements whatever its size: binary COPY of
plain rows into staging tables, then one INSERT ... SELECT (new trades and orders) or
UPDATE ... FROM (orders that existed before the batch) each. Rows arrive from
`svc_trades.changes` as the journal has them: prices in integer price units with the
instrument's `decimals`, times in integer nanoseconds, notionals as decimal strings
(they may exceed a bigint). PostgreSQL turns them into NUMERIC on the instrument's grid
and timestamptz at microsecond precision while moving them on, because encoding a
Decimal or a datetime costs asyncpg twenty times what an integer does, and the Python
side is the projection's bottleneck.
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


def _at(nanoseconds: str) -> str:
    """SQL: integer nanoseconds as a timestamptz, truncated to microseconds (exact)."""
    return f"timestamptz 'epoch' + {nanoseconds} / 1000 * interval '1 microsecond'"


def _price(units: str, decimals: str = "s.decimals") -> str:
    """SQL: integer price units as NUMERIC with exactly `decimals` digits (exact)."""
    return f"round({units} * 0.1 ^ {decimals}, {decimals})"


# Staged column -> (staging type, SQL of the stored value from staging row `s`), in the
# order of the rows `svc_trades.changes` makes; `decimals` only serves the conversions.
_TRADE = {
    "trade_id": ("uuid", "s.trade_id"), "symbol": ("text", "s.symbol"),
    "trade_no": ("bigint", "s.trade_no"), "seq": ("bigint", "s.seq"),
    "price": ("bigint", _price("s.price")), "quantity": ("bigint", "s.quantity"),
    "buy_order_id": ("text", "s.buy_order_id"), "sell_order_id": ("text", "s.sell_order_id"),
    "buyer_user_id": ("text", "s.buyer_user_id"),
    "seller_user_id": ("text", "s.seller_user_id"),
    "aggressor_side": ("text", "s.aggressor_side"),
    "execution_timestamp": ("bigint", _at("s.execution_timestamp")),
    "decimals": ("smallint", ""),
}
_CHANGE = {
    "order_id": ("text", "s.order_id"), "price": ("bigint", _price("s.price")),
    "quantity": ("bigint", "s.quantity"),
    "remaining_quantity": ("bigint", "s.remaining_quantity"),
    "traded_quantity": ("bigint", "s.traded_quantity"),
    "cancelled_quantity": ("bigint", "s.cancelled_quantity"),
    "notional": ("text", _price("s.notional::numeric")), "status": ("text", "s.status"),
    "cancel_reason": ("text", "s.cancel_reason"), "reject_reason": ("text", "s.reject_reason"),
    "updated_at": ("bigint", _at("s.updated_at")), "seq": ("bigint", "s.seq"),
    "decimals": ("smallint", ""),
}
_ORDER = {
    "order_id": ("text", "s.order_id"), "symbol": ("text", "s.symbol"),
    "side": ("text", "s.side"), "type": ("text", "s.type"),
    "time_in_force": ("text", "s.time_in_force"), "post_only": ("boolean", "s.post_only"),
    "stp": ("text", "s.stp"), "user_id": ("text", "s.user_id"),
    "client_order_id": ("text", "s.client_order_id"), "price": _CHANGE["price"],
    "quantity": _CHANGE["quantity"], "remaining_quantity": _CHANGE["remaining_quantity"],
    "traded_quantity": _CHANGE["traded_quantity"],
    "cancelled_quantity": _CHANGE["cancelled_quantity"], "notional": _CHANGE["notional"],
    "status": _CHANGE["status"], "cancel_reason": _CHANGE["cancel_reason"],
    "reject_reason": _CHANGE["reject_reason"], "created_at": ("bigint", _at("s.created_at")),
    "updated_at": _CHANGE["updated_at"], "seq": _CHANGE["seq"], "decimals": ("smallint", ""),
}
TRADE_ROWS, ORDER_ROWS, CHANGE_ROWS = "trade_rows", "order_rows", "change_rows"


def _staging(table: str, columns: Mapping[str, tuple[str, str]]) -> str:
    """A session's staging table, emptied by every commit; `n` keeps the COPY order."""
    defined = ", ".join(f"{column} {kind}" for column, (kind, _) in columns.items())
    return (f"CREATE TEMP TABLE IF NOT EXISTS {table} "
            f"(n bigint GENERATED ALWAYS AS IDENTITY, {defined}) ON COMMIT DELETE ROWS;")


def _stored(columns: Mapping[str, tuple[str, str]]) -> dict[str, str]:
    """Stored column -> its SQL, without the order id (the key) and staging-only columns."""
    return {column: sql for column, (_, sql) in columns.items() if sql and column != "order_id"}


def _insert(target: str, staging: str, columns: Mapping[str, tuple[str, str]],
            conflict: str = "") -> str:
    stored = {column: sql for column, (_, sql) in columns.items() if sql}
    return (f"INSERT INTO {target} ({', '.join(stored)}) "
            f"SELECT {', '.join(stored.values())} FROM {staging} AS s ORDER BY s.n {conflict}")


STAGING = "\n".join(_staging(table, columns) for table, columns in (
    (TRADE_ROWS, _TRADE), (ORDER_ROWS, _ORDER), (CHANGE_ROWS, _CHANGE)))
INSERT_TRADES = _insert("trades", TRADE_ROWS, _TRADE)
INSERT_ORDERS = _insert("orders", ORDER_ROWS, _ORDER)
# The careful path, for rows that may exist already (see `insert`).
INSERT_NEW_TRADES = _insert("trades", TRADE_ROWS, _TRADE, "ON CONFLICT (trade_id) DO NOTHING")
UPSERT_ORDERS = _insert("orders", ORDER_ROWS, _ORDER, f"""ON CONFLICT (order_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _stored(_ORDER))}
WHERE orders.seq < EXCLUDED.seq""")

# An order only moves forward in the journal.
UPDATE_ORDERS = f"""
UPDATE orders AS o SET {", ".join(f"{c} = {sql}" for c, sql in _stored(_CHANGE).items())}
FROM {CHANGE_ROWS} AS s
WHERE o.order_id = s.order_id AND o.seq < s.seq"""

LIVE = tuple(status.value for status in ACTIVE_STATUSES)

TRADE_COLUMNS = ("trade_id, symbol, trade_no, seq, price, quantity, buy_order_id, "
                 "sell_order_id, buyer_user_id, seller_user_id, aggressor_side, "
                 "execution_timestamp, is_settled, settlement_timestamp")


# ---- the projection's writes (inside the caller's transaction) ----------------------


async def create_staging(conn: asyncpg.Connection) -> None:
    """The staging tables of this connection (they live as long as it does)."""
    await conn.execute(STAGING)


async def _stage(conn: asyncpg.Connection, table: str, columns: Mapping[str, object],
                 rows: Sequence[Row]) -> None:
    await conn.copy_records_to_table(table, records=rows, columns=list(columns))


async def insert(conn: asyncpg.Connection, orders: Sequence[Row], trades: Sequence[Row],
                 careful: bool = False) -> None:
    """New orders and trades, or `careful`ly where some may exist already.

    Only a journal that reuses an order id (or holds a trade twice) needs the careful
    path: trades keyed by their stable id, orders replaced only by a later state.
    """
    if trades:
        await _stage(conn, TRADE_ROWS, _TRADE, trades)
        await conn.execute(INSERT_NEW_TRADES if careful else INSERT_TRADES)
    if orders:
        await _stage(conn, ORDER_ROWS, _ORDER, orders)
        await conn.execute(UPSERT_ORDERS if careful else INSERT_ORDERS)


async def update_orders(conn: asyncpg.Connection, rows: Sequence[Row]) -> None:
    if rows:
        await _stage(conn, CHANGE_ROWS, _CHANGE, rows)
        await conn.execute(UPDATE_ORDERS)


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


async def settle(pool: asyncpg.Pool, trade: str, at: int,
                 instruments: Mapping[str, Instrument]) -> tuple[TradeView | None, bool]:
    """Settle at `at` (nanoseconds) unless already settled: (the settled trade, whether
    it exists).

    The row lock serialises concurrent settles; the loser re-reads `is_settled`.
    """
    async with _writing(pool) as conn:
        row = await conn.fetchrow(f"""
            UPDATE trades SET is_settled = true, settlement_timestamp = {_at("$2::bigint")}
            WHERE trade_id = $1 AND NOT is_settled RETURNING {TRADE_COLUMNS}""", trade, at)
        if row is not None:
            return trade_of(row, instruments), True
        exists = await conn.fetchval("SELECT true FROM trades WHERE trade_id = $1", trade)
    return None, bool(exists)
