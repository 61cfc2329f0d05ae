"""svc_trades' operations for its OpenAPI document (`/openapi.json`). With auth on,
trades name the other party's order and user only to an admin (null otherwise)."""

from __future__ import annotations

from common.keys import IssuedKey
from common.listing import OrderList
from common.openapi import (
    COMMON_OPERATIONS,
    ORDER_LIST_QUERY,
    PAGE_QUERY,
    SYMBOL_QUERY,
    UUID,
    Operation,
    Param,
    any_case,
    int_param,
    text_param,
)
from common.views import TradeView
from svc_trades.api import DEFAULT_DEPTH, FLAG_WORDS, MAX_DEPTH, OrderBook, PublicTrades, Settled
from svc_trades.keys import NewKey, RevokedKey
from svc_trades.repository import TradeList

MOMENT = {"type": "string", "format": "date-time"}
SYMBOL_OR_DEFAULT = text_param("instrument (default DEFAULT); unknown: 404")

OPERATIONS = [
    Operation("GET", "/trades/", "Trades, newest first", {200: TradeList}, query={
        "symbol": SYMBOL_QUERY,
        "order_id": Param("either side's order (UUID)", UUID),
        "user_id": Param("either side's user (UUID)", UUID),
        "settled": Param("settled or not (any case)", {
            "type": "string", "pattern": any_case(FLAG_WORDS[True] + FLAG_WORDS[False])}),
        "since": Param("RFC 3339 time, inclusive", MOMENT),
        "until": Param("RFC 3339 time, exclusive", MOMENT),
        **PAGE_QUERY}),
    Operation("GET", "/trades/public/", "One instrument's trades, newest first, without "
              "user or order ids", {200: PublicTrades},
              query={"symbol": SYMBOL_OR_DEFAULT, **PAGE_QUERY}, failures=(400, 404),
              access="public"),
    Operation("GET", "/trades/{trade_id}/", "One trade", {200: TradeView},
              failures=(400, 404)),
    Operation("POST", "/trades/{trade_id}/settle/", "Settle a trade, once", {200: Settled},
              failures=(400, 404, 409), role="admin"),
    Operation("GET", "/orderbook/", "Aggregated book, best levels first", {200: OrderBook},
              query={"symbol": SYMBOL_OR_DEFAULT,
                     "depth": int_param("levels per side", 1, MAX_DEPTH, DEFAULT_DEPTH)},
              failures=(400, 404, 503), access="public"),
    Operation("GET", "/orders/", "Orders, newest first, from the projection",
              {200: OrderList}, query=ORDER_LIST_QUERY, failures=(400, 503)),
    Operation("POST", "/admin/keys/", "Create an API key (its secret is shown this once)",
              {201: IssuedKey}, body=NewKey, failures=(400, 413, 503), role="admin",
              auth_only=True),
    Operation("DELETE", "/admin/keys/{key_id}/", "Revoke an API key", {200: RevokedKey},
              failures=(400, 404, 409, 503), role="admin", auth_only=True),
    *COMMON_OPERATIONS,
]
