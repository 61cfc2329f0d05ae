"""What svc_orders asks svc_trades: the orders it no longer holds, and listings.

svc_orders keeps live and recent orders in memory (`store`); any other order and every
listing come from svc_trades' read model, over NATS request-reply (`common.queries`).
svc_orders parses and checks a listing's query itself (the same 400s as svc_trades)
and sends svc_trades' JSON on as it is. No svc_trades, no reply within
`EX_QUERY_TIMEOUT`, or a `QueryFailed` reply is a 503, at once or at the timeout.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
import nats.errors
from aiohttp import web
from nats.aio.client import Client as Nats

from common import subjects
from common.http import ApiError, json_body_response
from common.listing import order_filters, page_request
from common.messages import encoder
from common.orderstate import OrderState
from common.queries import (
    FoundOrder,
    GetOrder,
    ListOrders,
    OrderFilters,
    OrderPage,
    PageRequest,
    QueryFailed,
    reply_decoder,
)

R = TypeVar("R", FoundOrder, OrderPage)


def _unavailable(reason: str) -> ApiError:
    return ApiError(503, "UNAVAILABLE", "the order history (svc_trades) is unavailable",
                    {"reason": reason})


class ReadModel:
    """svc_trades' order read model, asked over NATS."""

    def __init__(self, nc: Nats, timeout: float) -> None:
        self.nc, self.timeout = nc, timeout

    async def get(self, order_id: str) -> OrderState | None:
        """The projected order, None if svc_trades has none; a 503 `ApiError` if it
        cannot say."""
        reply = await self._ask(subjects.ORDER_QUERY, GetOrder(order_id=order_id),
                                FoundOrder)
        return reply.order

    async def listing(self, filters: OrderFilters, page: PageRequest) -> bytes:
        """The JSON body of `GET /orders/`, as svc_trades answers it."""
        reply = await self._ask(subjects.ORDERS_QUERY, ListOrders(filters=filters, page=page),
                                OrderPage)
        return reply.body

    async def _ask(self, subject: str, request: msgspec.Struct, expected: type[R]) -> R:
        try:
            msg = await self.nc.request(subject, encoder.encode(request),
                                        timeout=self.timeout)
        except (nats.errors.Error, TimeoutError) as error:
            raise _unavailable(type(error).__name__) from None
        try:
            reply = reply_decoder.decode(msg.data)
        except msgspec.DecodeError:
            raise _unavailable("malformed reply") from None
        if isinstance(reply, QueryFailed):
            raise _unavailable(reply.reason)
        if not isinstance(reply, expected):
            raise _unavailable(f"a {type(reply).__name__} reply to {subject}")
        return reply


READ_MODEL = web.AppKey("read_model", ReadModel)


async def list_orders(request: web.Request) -> web.Response:
    """`GET /orders/`: checked here, answered by svc_trades."""
    filters = order_filters(request)
    page = page_request(request, "orders")
    return json_body_response(await request.app[READ_MODEL].listing(filters, page))
