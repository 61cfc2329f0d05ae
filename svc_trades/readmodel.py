"""The order read model: projected orders by id, and the listing of `GET /orders/`.

svc_trades owns the projection, so it alone reads it: its own `GET /orders/` and
svc_orders' questions over NATS (`svc_trades.responder`) both come here. A listing is
encoded to JSON once, here, and both services send those bytes as they are.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import asyncpg

from common.instruments import Instrument
from common.listing import OrderList
from common.orderstate import OrderState
from common.queries import OrderFilters, PageRequest
from common.views import json_encoder, order_view
from svc_trades.reading import Where, fetch_page, read_only
from svc_trades.repository import projection_position
from svc_trades.rows import ORDER_COLUMNS, instrument_of, order_state


async def load_states(conn: asyncpg.Connection, order_ids: Collection[str],
                      instruments: Mapping[str, Instrument]) -> dict[str, OrderState]:
    """The projected state of each of `order_ids` that exists, in one query."""
    if not order_ids:
        return {}
    rows = await conn.fetch(f"SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = ANY($1)",
                            list(order_ids))
    return {row["order_id"]: order_state(row, instruments) for row in rows}


class OrderReadModel:
    """Needs only read access to the database; a 503 `ApiError` while it is down."""

    def __init__(self, pool: asyncpg.Pool, instruments: Mapping[str, Instrument]) -> None:
        self.pool, self.instruments = pool, instruments

    async def get(self, order_id: str) -> OrderState | None:
        async with read_only(self.pool) as conn:
            return (await load_states(conn, (order_id,), self.instruments)).get(order_id)

    async def listing(self, filters: OrderFilters, page: PageRequest) -> bytes:
        """The JSON body of `GET /orders/`: a page, its pagination and `as_of_seq`."""
        where = Where()
        for column in ("status", "side"):
            value = getattr(filters, column)
            if value is not None:
                where.add(f"{column} = {{0}}", value.value)
        for column in ("user_id", "symbol", "client_order_id"):
            value = getattr(filters, column)
            if value is not None:
                where.add(f"{column} = {{0}}", value)
        async with read_only(self.pool) as conn:
            rows, pagination = await fetch_page(conn, "orders", ORDER_COLUMNS, where, page,
                                                "orders")
            as_of_seq = await projection_position(conn)
        views = [order_view(order_state(row, self.instruments),
                            instrument_of(self.instruments, row["symbol"])) for row in rows]
        return json_encoder.encode(OrderList(orders=views, pagination=pagination,
                                            as_of_seq=as_of_seq))
