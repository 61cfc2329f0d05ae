"""All of svc_trades' SQL: the projection's batch writes, trade queries, settlement.

Batch writes send one array per column and `unnest` them: a batch of any size is one
statement per table, planned once, its arrays encoded in binary by asyncpg. Timestamps
travel as integer microseconds and become timestamptz in SQL, exactly; prices as
Decimals on the instrument's grid (NUMERIC, never float).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec

from common.history import (
    UNAVAILABLE,
    PageRequest,
    Pagination,
    Where,
    fetch_page,
    instrument_of,
    micros,
    projection_position,
    snapshot,
    units,
)
from common.http import ApiError
from common.instruments import Instrument
from common.messages import Side, TradeExecuted
from common.orderstate import OrderState
from common.views import TradeView, timestamp, trade_id, trade_view


def _ts(column: str) -> str:
    return f"'epoch'::timestamptz + {column} * interval '1 microsecond'"


INSERT_TRADES = f"""
INSERT INTO trades (trade_id, symbol, trade_no, seq, price, quantity, buy_order_id,
                    sell_order_id, buyer_user_id, seller_user_id, aggressor_side,
                    execution_timestamp)
SELECT t.trade_id, t.symbol, t.trade_no, t.seq, t.price, t.quantity, t.buy, t.sell,
       t.buyer, t.seller, t.aggressor, {_ts("t.ts")}
FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::numeric[],
            $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
            $12::bigint[])
     AS t(trade_id, symbol, trade_no, seq, price, quantity, buy, sell, buyer, seller,
          aggressor, ts)
ON CONFLICT (trade_id) DO NOTHING
"""

_ORDER_FIELDS = ("symbol", "side", "type", "time_in_force", "post_only", "stp", "user_id",
                 "client_order_id", "price", "quantity", "remaining_quantity",
                 "traded_quantity", "cancelled_quantity", "notional", "status",
                 "cancel_reason", "reject_reason", "created_at", "updated_at", "seq")

# The fold already decided each order's state; a row only moves forward in the journal.
UPSERT_ORDERS = f"""
INSERT INTO orders (order_id, {", ".join(_ORDER_FIELDS)})
SELECT o.order_id, o.symbol, o.side, o.type, o.time_in_force, o.post_only, o.stp,
       o.user_id, o.client_order_id, o.price, o.quantity, o.remaining, o.traded,
       o.cancelled, o.notional, o.status, o.cancel_reason, o.reject_reason,
       {_ts("o.created")}, {_ts("o.updated")}, o.seq
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::boolean[],
            $7::text[], $8::text[], $9::text[], $10::numeric[], $11::bigint[],
            $12::bigint[], $13::bigint[], $14::bigint[], $15::numeric[], $16::text[],
            $17::text[], $18::text[], $19::bigint[], $20::bigint[], $21::bigint[])
     AS o(order_id, symbol, side, type, time_in_force, post_only, stp, user_id,
          client_order_id, price, quantity, remaining, traded, cancelled, notional,
          status, cancel_reason, reject_reason, created, updated, seq)
ON CONFLICT (order_id) DO UPDATE SET
    {", ".join(f"{field} = EXCLUDED.{field}" for field in _ORDER_FIELDS)}
WHERE orders.seq < EXCLUDED.seq
"""

TRADE_COLUMNS = ("trade_id, symbol, trade_no, seq, price, quantity, buy_order_id, "
                 "sell_order_id, buyer_user_id, seller_user_id, aggressor_side, "
                 "execution_timestamp, is_settled, settlement_timestamp")


# ---- the projection's writes (inside the caller's transaction) ----------------------


def _decimal(value: int, instrument: Instrument) -> Decimal:
    return Decimal(value).scaleb(-instrument.decimals)


async def insert_trades(conn: asyncpg.Connection, trades: Sequence[TradeExecuted],
                        instruments: Mapping[str, Instrument]) -> None:
    """Trades keyed by their stable id: a replayed trade is not written twice."""
    if not trades:
        return
    rows = [(trade_id(t.symbol, t.trade_no), t.symbol, t.trade_no, t.seq,
             _decimal(t.price, instruments[t.symbol]), t.quantity, t.buy_order_id,
             t.sell_order_id, t.buyer_user_id, t.seller_user_id, t.aggressor_side.value,
             t.timestamp // 1000) for t in trades]
    await conn.execute(INSERT_TRADES, *zip(*rows, strict=True))


async def upsert_orders(conn: asyncpg.Connection, states: Sequence[OrderState],
                        instruments: Mapping[str, Instrument]) -> None:
    """Write each order's folded state unless the row already holds a later one."""
    if not states:
        return
    rows = []
    for s in states:
        instrument = instruments[s.symbol]
        rows.append((
            s.order_id, s.symbol, s.side.value, s.type.value, s.time_in_force.value,
            s.post_only, s.stp.value, s.user_id, s.client_order_id,
            None if s.price is None else _decimal(s.price, instrument), s.quantity,
            s.remaining, s.traded, s.cancelled, _decimal(s.notional, instrument),
            s.status.value, None if s.cancel_reason is None else s.cancel_reason.value,
            None if s.reject_reason is None else s.reject_reason.value,
            s.created_at // 1000, s.updated_at // 1000, s.seq))
    await conn.execute(UPSERT_ORDERS, *zip(*rows, strict=True))


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
    since: int | None = None  # microseconds, inclusive
    until: int | None = None  # microseconds, exclusive


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
        where.add("is_settled = {0}", filters.settled)
    if filters.since is not None:
        where.add(f"execution_timestamp >= {_ts('{0}::bigint')}", filters.since)
    if filters.until is not None:
        where.add(f"execution_timestamp < {_ts('{0}::bigint')}", filters.until)
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
    """Settle at `at` (microseconds) unless already settled: (the settled trade, exists).

    The row lock serialises concurrent settles; the loser re-reads `is_settled`.
    """
    async with _writing(pool) as conn:
        row = await conn.fetchrow(f"""
            UPDATE trades SET is_settled = true, settlement_timestamp = {_ts("$2::bigint")}
            WHERE trade_id = $1 AND NOT is_settled RETURNING {TRADE_COLUMNS}""", trade, at)
        if row is not None:
            return trade_of(row, instruments), True
        exists = await conn.fetchval("SELECT true FROM trades WHERE trade_id = $1", trade)
    return None, bool(exists)
