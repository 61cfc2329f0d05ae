"""How svc_trades reads the projection: one read-only transaction per answer, pages.

Every answer (a page, its count and `as_of_seq`) is read in one read-only
repeatable-read transaction, so its parts agree with each other while the projection
goes on writing. A database that is down, or that has no projection schema yet (svc_trades
migrates it at start), is a 503 for the client, never a 500.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from common.http import ApiError
from common.listing import Pagination, encode_cursor
from common.queries import PageRequest

ACQUIRE_TIMEOUT = 2.0  # seconds to wait for a pooled connection before answering 503

# The database is down, unreachable or not migrated, not the query wrong: answer 503.
UNAVAILABLE = (OSError, TimeoutError, asyncpg.PostgresConnectionError,
               asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
               asyncpg.TooManyConnectionsError, asyncpg.AdminShutdownError,
               asyncpg.UndefinedTableError)


def unavailable(error: BaseException) -> ApiError:
    return ApiError(503, "UNAVAILABLE", "the projection database is unavailable",
                    {"reason": type(error).__name__})


@contextlib.asynccontextmanager
async def read_only(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A read-only repeatable-read transaction; a 503 `ApiError` if the database is down."""
    try:
        async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction(
                isolation="repeatable_read", readonly=True):
            yield conn
    except UNAVAILABLE as error:
        raise unavailable(error) from None


async def fetch_row(pool: asyncpg.Pool, query: str, *args: Any) -> asyncpg.Record:
    """The one row of one statement (its own consistent snapshot: no transaction, one
    round trip); a 503 `ApiError` if the database is down."""
    try:
        async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            return await conn.fetchrow(query, *args)
    except UNAVAILABLE as error:
        raise unavailable(error) from None


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
