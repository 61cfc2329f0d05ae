"""The order read model's requests and replies: svc_orders asks, svc_trades answers.

svc_trades owns the projection of the journal in PostgreSQL. svc_orders keeps live and
recent orders in memory and asks svc_trades, over NATS request-reply (msgpack), for any
other order (`GetOrder` on `subjects.ORDER_QUERY`) and for listings (`ListOrders` on
`subjects.ORDERS_QUERY`). A listing comes back as the JSON body svc_trades answers its
own `GET /orders/` with, so the two services answer byte for byte alike. A reply that
is a `QueryFailed`, or none within `EX_QUERY_TIMEOUT`, is a 503 for the client.
"""

from __future__ import annotations

import msgspec

from common.messages import OrderStatus, Side
from common.orderstate import OrderState
from common.views import CandleList


class OrderFilters(msgspec.Struct, frozen=True, kw_only=True):
    """The filters of an order listing; None means any."""

    status: OrderStatus | None = None
    side: Side | None = None
    user_id: str | None = None
    symbol: str | None = None
    client_order_id: str | None = None


class PageRequest(msgspec.Struct, frozen=True):
    page: int
    size: int
    after: int | None = None  # keyset: only rows with a smaller id


class GetOrder(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str


class ListOrders(msgspec.Struct, frozen=True, kw_only=True):
    filters: OrderFilters
    page: PageRequest


class RecentCandles(msgspec.Struct, frozen=True, kw_only=True):
    """svc_stream's question for a `candles` snapshot: the latest `limit` one-minute
    candles, counted once the projection holds the instrument's commands up to `seq`
    (svc_trades waits a moment for it), so that live trades past `seq` complete them."""

    symbol: str
    seq: int
    limit: int


class Reply(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Every reply names its kind, so one decoder reads them all."""


class FoundOrder(Reply, frozen=True, tag="order"):
    """The answer to `GetOrder`: the projected order, None if there is none."""

    order: OrderState | None


class OrderPage(Reply, frozen=True, tag="orders"):
    """The answer to `ListOrders`: the JSON body of `GET /orders/`, encoded once."""

    body: bytes


class CandlesFound(Reply, frozen=True, tag="candles"):
    """The answer to `RecentCandles`; `candles.as_of_seq` says how far they count."""

    candles: CandleList


class QueryFailed(Reply, frozen=True, tag="failed"):
    """svc_trades could not read the projection (database down, schema missing)."""

    message: str
    reason: str


get_order_decoder = msgspec.msgpack.Decoder(GetOrder)
list_orders_decoder = msgspec.msgpack.Decoder(ListOrders)
recent_candles_decoder = msgspec.msgpack.Decoder(RecentCandles)
reply_decoder = msgspec.msgpack.Decoder(FoundOrder | OrderPage | CandlesFound | QueryFailed)
