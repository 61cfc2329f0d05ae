"""The read side of order history: orders as the svc_trades projection holds them.

svc_trades writes the `orders` table (the journal folded by `common.orderstate`);
svc_orders reads finished orders from it with a read-only pool. Both mount
`list_orders` for `GET /orders/`, so the two listings are one code path: the same
filters, the same 400s, the same pagination and cursors, the same JSON. Each listing
reads its rows, its count and `as_of_seq` (the last projected sequence of each
instrument: the projection may lag the matcher) in one read-only snapshot.

Listings are newest first by `id`, the projection's insertion order; a cursor is that key
plus the page number, so deep pages cost an index seek instead of an offset scan.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
import uuid
from collections.abc import AsyncIterator, Collection, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from common.http import ApiError, json_response, query_int
from common.instruments import Instrument
from common.messages import (
    CancelReason,
    OrderStatus,
    OrderType,
    RejectReason,
    Side,
    Stp,
    TimeInForce,
)
from common.orderstate import OrderState
from common.views import OrderView, order_view

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_PAGE = 1_000_000  # offsets cost a scan each; deeper pages go by cursor
MAX_TEXT = 64  # longest symbol or client_order_id a filter accepts
ACQUIRE_TIMEOUT = 2.0  # seconds to wait for a pooled connection before answering 503
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)

ORDER_COLUMNS = ("order_id, symbol, side, type, time_in_force, post_only, stp, user_id, "
                 "client_order_id, price, quantity, remaining_quantity, traded_quantity, "
                 "cancelled_quantity, notional, status, cancel_reason, reject_reason, "
                 "created_at, updated_at, seq")

# The database is down or unreachable, not the query wrong: answer 503.
UNAVAILABLE = (OSError, TimeoutError, asyncpg.PostgresConnectionError,
               asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
               asyncpg.TooManyConnectionsError, asyncpg.AdminShutdownError)


# ---- conversions between rows and integer state --------------------------------------


def micros(moment: datetime) -> int:
    """A timestamptz as integer microseconds since the epoch (exact)."""
    return (moment - EPOCH) // MICROSECOND


def units(value: Decimal, instrument: Instrument) -> int:
    """A stored NUMERIC back into the instrument's integer price units."""
    result = instrument.to_units(value)
    if result is None:
        raise ValueError(f"{value} is off the price grid of {instrument.symbol}")
    return result


def instrument_of(instruments: Mapping[str, Instrument], symbol: str) -> Instrument:
    try:
        return instruments[symbol]
    except KeyError:
        raise LookupError(f"instrument {symbol!r} is projected but not configured") from None


def order_state(row: Mapping[str, Any], instruments: Mapping[str, Instrument]) -> OrderState:
    """The `OrderState` a projected row holds (timestamps at microsecond precision)."""
    instrument = instrument_of(instruments, row["symbol"])
    price = row["price"]
    return OrderState(
        order_id=row["order_id"], symbol=row["symbol"], side=Side(row["side"]),
        type=OrderType(row["type"]), time_in_force=TimeInForce(row["time_in_force"]),
        post_only=row["post_only"], stp=Stp(row["stp"]), user_id=row["user_id"],
        client_order_id=row["client_order_id"],
        price=None if price is None else units(price, instrument),
        quantity=row["quantity"], remaining=row["remaining_quantity"],
        traded=row["traded_quantity"], cancelled=row["cancelled_quantity"],
        notional=units(row["notional"], instrument), status=OrderStatus(row["status"]),
        cancel_reason=None if row["cancel_reason"] is None
        else CancelReason(row["cancel_reason"]),
        reject_reason=None if row["reject_reason"] is None
        else RejectReason(row["reject_reason"]),
        created_at=micros(row["created_at"]) * 1000,
        updated_at=micros(row["updated_at"]) * 1000, seq=row["seq"])


async def load_states(conn: asyncpg.Connection, order_ids: Collection[str],
                      instruments: Mapping[str, Instrument]) -> dict[str, OrderState]:
    """The projected state of each of `order_ids` that exists, in one query."""
    if not order_ids:
        return {}
    rows = await conn.fetch(f"SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = ANY($1)",
                            list(order_ids))
    return {row["order_id"]: order_state(row, instruments) for row in rows}


async def projection_position(conn: asyncpg.Connection) -> dict[str, int]:
    """The last projected sequence number of each instrument."""
    return {row["symbol"]: row["seq"]
            for row in await conn.fetch("SELECT symbol, seq FROM projection_symbols")}


@contextlib.asynccontextmanager
async def snapshot(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A read-only repeatable-read transaction; a 503 `ApiError` if the database is down."""
    try:
        async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction(
                isolation="repeatable_read", readonly=True):
            yield conn
    except UNAVAILABLE as error:
        raise ApiError(503, "UNAVAILABLE", "the projection database is unavailable",
                       {"reason": type(error).__name__}) from None


# ---- query parameters ----------------------------------------------------------------


def invalid(name: str, message: str, value: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER", message, {"parameter": name, "value": value})


def param(request: web.Request, name: str, max_length: int = MAX_TEXT) -> str | None:
    """A text query parameter; absent and empty are the same."""
    raw = request.query.get(name)
    if not raw:
        return None
    if len(raw) > max_length:
        raise invalid(name, f"{name} must be at most {max_length} characters", raw[:max_length])
    return raw


def uuid_param(request: web.Request, name: str) -> str | None:
    """A UUID query parameter in canonical form (as the services store ids)."""
    raw = param(request, name)
    if raw is None:
        return None
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise invalid(name, f"{name} must be a UUID", raw) from None


def side_param(request: web.Request) -> Side | None:
    raw = param(request, "side")
    if raw is None:
        return None
    if raw.lower() in ("buy", "1"):
        return Side.BUY
    if raw.lower() in ("sell", "-1"):
        return Side.SELL
    raise invalid("side", 'side must be "buy", "sell", 1 or -1', raw)


def status_param(request: web.Request) -> OrderStatus | None:
    raw = param(request, "status")
    if raw is None:
        return None
    try:
        return OrderStatus(raw.upper())
    except ValueError:
        allowed = ", ".join(status.value for status in OrderStatus)
        raise invalid("status", f"status must be one of {allowed}", raw) from None


# ---- pages ---------------------------------------------------------------------------


class PageRequest(msgspec.Struct, frozen=True):
    page: int
    size: int
    after: int | None = None  # keyset: only rows with a smaller id


class Pagination(msgspec.Struct, kw_only=True):
    page: int
    page_size: int
    total_pages: int
    total_count: int
    has_next: bool
    has_previous: bool
    next_cursor: str | None


def encode_cursor(listing: str, page: int, after: int) -> str:
    raw = msgspec.json.encode((listing, page, after))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def page_request(request: web.Request, listing: str) -> PageRequest:
    """`page`, `page_size` and `cursor` (a cursor decides the page it continues)."""
    page = query_int(request, "page", 1, 1, MAX_PAGE)
    size = query_int(request, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    raw = param(request, "cursor", 200)
    if raw is None:
        return PageRequest(page, size)
    try:
        decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        kind, page, after = msgspec.json.decode(decoded, type=tuple[str, int, int])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ApiError(400, "INVALID_CURSOR", "cursor is not one this API issued",
                       {"parameter": "cursor"}) from None
    if kind != listing or not 1 < page <= MAX_PAGE or after < 1:
        raise ApiError(400, "INVALID_CURSOR", f"cursor does not continue a {listing} listing",
                       {"parameter": "cursor"})
    return PageRequest(page, size, after)


class Where:
    """A WHERE clause of optional filters with numbered asyncpg arguments."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.args: list[Any] = []

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, condition: str, value: Any) -> None:
        """`condition` names the value `{0}` (as often as it needs)."""
        self.conditions.append(condition.format(self.arg(value)))

    def require(self, condition: str) -> None:
        """A condition without values (one a partial index can be matched against)."""
        self.conditions.append(condition)

    def sql(self) -> str:
        return f" WHERE {' AND '.join(self.conditions)}" if self.conditions else ""


async def fetch_page(conn: asyncpg.Connection, table: str, columns: str, where: Where,
                     page: PageRequest, listing: str) -> tuple[list[Any], Pagination]:
    """One page of `table` newest first, and where it stands among all matching rows."""
    total = await conn.fetchval(f"SELECT count(*) FROM {table}{where.sql()}", *where.args)
    if page.after is not None:
        where.add("id < {0}", page.after)
    offset = 0 if page.after is not None else (page.page - 1) * page.size
    rows = await conn.fetch(
        f"SELECT id, {columns} FROM {table}{where.sql()} ORDER BY id DESC "
        f"LIMIT {where.arg(page.size + 1)} OFFSET {where.arg(offset)}", *where.args)
    has_next = len(rows) > page.size
    rows = rows[:page.size]
    return rows, Pagination(
        page=page.page, page_size=page.size, total_pages=math.ceil(total / page.size),
        total_count=total, has_next=has_next, has_previous=page.page > 1,
        next_cursor=encode_cursor(listing, page.page + 1, rows[-1]["id"]) if has_next
        else None)


# ---- orders --------------------------------------------------------------------------


class OrderFilters(msgspec.Struct, frozen=True, kw_only=True):
    status: OrderStatus | None = None
    side: Side | None = None
    user_id: str | None = None
    symbol: str | None = None
    client_order_id: str | None = None


class OrderList(msgspec.Struct, kw_only=True):
    orders: list[OrderView]
    pagination: Pagination
    as_of_seq: dict[str, int]


def order_filters(request: web.Request) -> OrderFilters:
    """The filters of `GET /orders/`, or a 400 naming the bad one."""
    return OrderFilters(status=status_param(request), side=side_param(request),
                        user_id=uuid_param(request, "user_id"), symbol=param(request, "symbol"),
                        client_order_id=param(request, "client_order_id"))


class OrderHistory:
    """Projected orders for either service; needs only read access to the database."""

    def __init__(self, pool: asyncpg.Pool, instruments: Mapping[str, Instrument]) -> None:
        self.pool, self.instruments = pool, instruments

    async def get(self, order_id: str) -> OrderState | None:
        async with snapshot(self.pool) as conn:
            return (await load_states(conn, (order_id,), self.instruments)).get(order_id)

    async def position(self) -> dict[str, int]:
        async with snapshot(self.pool) as conn:
            return await projection_position(conn)

    async def list(self, filters: OrderFilters, page: PageRequest) -> OrderList:
        where = Where()
        for column in ("status", "side"):
            value = getattr(filters, column)
            if value is not None:
                where.add(f"{column} = {{0}}", value.value)
        for column in ("user_id", "symbol", "client_order_id"):
            value = getattr(filters, column)
            if value is not None:
                where.add(f"{column} = {{0}}", value)
        async with snapshot(self.pool) as conn:
            rows, pagination = await fetch_page(conn, "orders", ORDER_COLUMNS, where, page,
                                                "orders")
            as_of_seq = await projection_position(conn)
        views = [order_view(order_state(row, self.instruments),
                            instrument_of(self.instruments, row["symbol"])) for row in rows]
        return OrderList(orders=views, pagination=pagination, as_of_seq=as_of_seq)


HISTORY = web.AppKey("order_history", OrderHistory)


async def list_orders(request: web.Request) -> web.Response:
    """`GET /orders/` for any app that sets `app[HISTORY]`."""
    filters = order_filters(request)
    page = page_request(request, "orders")
    return json_response(await request.app[HISTORY].list(filters, page))
