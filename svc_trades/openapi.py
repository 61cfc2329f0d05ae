"""svc_trades' operations for its OpenAPI document (`/openapi.json`)."""

from __future__ import annotations

from common.listing import OrderList
from common.openapi import ORDER_LIST_QUERY, PAGE_QUERY, Operation
from common.views import TradeView
from svc_trades.api import OrderBook, Settled
from svc_trades.repository import TradeList

OPERATIONS = [
    Operation("GET", "/trades/", "Trades, newest first", {200: TradeList}, query={
        "symbol": "instrument symbol", "order_id": "either side's order (UUID)",
        "user_id": "either side's user (UUID)", "settled": "true or false",
        "since": "RFC 3339 time, inclusive", "until": "RFC 3339 time, exclusive",
        **PAGE_QUERY}),
    Operation("GET", "/trades/{trade_id}/", "One trade", {200: TradeView}),
    Operation("POST", "/trades/{trade_id}/settle/", "Settle a trade, once", {200: Settled}),
    Operation("GET", "/orderbook/", "Aggregated book, best levels first", {200: OrderBook},
              query={"symbol": "instrument (default DEFAULT)", "depth": "1 to 100 (default 5)"}),
    Operation("GET", "/orders/", "Orders, newest first, from the projection",
              {200: OrderList}, query=ORDER_LIST_QUERY),
]
