"""The listings' query strings and answers, the same for every service that lists.

`GET /orders/` is answered by svc_trades and, through it, by svc_orders; `GET /trades/`
by svc_trades. Each parses its page and filters here (the same 400s everywhere), and a
cursor issued by one listing is refused by the other. Listings are newest first by `id`,
the projection's insertion order; a cursor is that key plus the page number, so deep
pages cost an index seek instead of an offset scan. With auth on, a listing holds only
the caller's own rows unless the caller is an admin (`common.access.owner_filter`).
"""

from __future__ import annotations

import base64
import binascii

import msgspec
from aiohttp import web

from common.access import identity, owner_filter
from common.http import ApiError, invalid, query_int, query_text, query_uuid
from common.messages import OrderStatus, Side
from common.queries import OrderFilters, PageRequest
from common.views import OrderView

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_PAGE = 1_000_000  # offsets cost a scan each; deeper pages go by cursor
MAX_CURSOR = 200  # characters


class Pagination(msgspec.Struct, kw_only=True):
    page: int
    page_size: int
    total_pages: int
    total_count: int
    has_next: bool
    has_previous: bool
    next_cursor: str | None


class OrderList(msgspec.Struct, kw_only=True):
    """The answer of `GET /orders/`; `as_of_seq`: the last projected sequence number of
    each instrument, since the projection may lag the matcher."""

    orders: list[OrderView]
    pagination: Pagination
    as_of_seq: dict[str, int]


def encode_cursor(listing: str, page: int, after: int) -> str:
    raw = msgspec.json.encode((listing, page, after))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


MAX_ROW_ID = 2**63 - 1  # row ids are PostgreSQL bigints


def page_request(request: web.Request, listing: str) -> PageRequest:
    """`page`, `page_size` and `cursor` (a cursor decides the page it continues)."""
    page = query_int(request, "page", 1, 1, MAX_PAGE)
    size = query_int(request, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    raw = query_text(request, "cursor", MAX_CURSOR)
    if raw is None:
        return PageRequest(page, size)
    try:
        decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        kind, page, after = msgspec.json.decode(decoded, type=tuple[str, int, int])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ApiError(400, "INVALID_CURSOR", "cursor is not one this API issued",
                       {"parameter": "cursor"}) from None
    if kind != listing or not 1 < page <= MAX_PAGE or not 1 <= after <= MAX_ROW_ID:
        raise ApiError(400, "INVALID_CURSOR", f"cursor does not continue a {listing} listing",
                       {"parameter": "cursor"})
    return PageRequest(page, size, after)


def order_filters(request: web.Request) -> OrderFilters:
    """The filters of `GET /orders/`, or a 400 naming the bad one (403 for another
    user's orders)."""
    return OrderFilters(status=_status(request), side=_side(request),
                        user_id=owner_filter(identity(request),
                                             query_uuid(request, "user_id")),
                        symbol=query_text(request, "symbol"),
                        client_order_id=query_text(request, "client_order_id"))


def _side(request: web.Request) -> Side | None:
    raw = query_text(request, "side")
    if raw is None:
        return None
    if raw.lower() in ("buy", "1"):
        return Side.BUY
    if raw.lower() in ("sell", "-1"):
        return Side.SELL
    raise invalid("side", 'side must be "buy", "sell", 1 or -1', raw)


def _status(request: web.Request) -> OrderStatus | None:
    raw = query_text(request, "status")
    if raw is None:
        return None
    try:
        if not raw.isascii():  # Unicode case mapping takes an fi ligature for FI
            raise ValueError(raw)
        return OrderStatus(raw.upper())
    except ValueError:
        allowed = ", ".join(status.value for status in OrderStatus)
        raise invalid("status", f"status must be one of {allowed}", raw) from None
