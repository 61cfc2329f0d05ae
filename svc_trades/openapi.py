"""svc_trades' operations for its OpenAPI document (`/openapi.json`). With auth on,
trades name the other party's order and user only to an admin (null otherwise)."""

from __future__ import annotations

from common.accountviews import BalancesView, LedgerList
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
from common.transfers import TRANSFER_OPERATIONS
from common.views import CandleList, TradeView
from svc_trades.api import DEFAULT_DEPTH, FLAG_WORDS, MAX_DEPTH, OrderBook, PublicTrades, Settled
from svc_trades.candles import DEFAULT_INTERVAL, DEFAULT_LIMIT, INTERVALS, MAX_LIMIT
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
    Operation("GET", "/candles/", "OHLCV candles of the trades, oldest first",
              {200: CandleList}, query={
                  "symbol": SYMBOL_OR_DEFAULT,
                  "interval": Param(f"candle length (default {DEFAULT_INTERVAL})",
                                    {"type": "string", "enum": list(INTERVALS)}),
                  "since": Param("RFC 3339 time: the candle holding it comes first", MOMENT),
                  "until": Param("RFC 3339 time: candles starting before it (default now, "
                                 "the current candle included)", MOMENT),
                  "limit": int_param("most candles; without since, the latest", 1,
                                     MAX_LIMIT, DEFAULT_LIMIT)},
              failures=(400, 404, 503), access="public"),
    Operation("GET", "/orders/", "Orders, newest first, from the projection",
              {200: OrderList}, query=ORDER_LIST_QUERY, failures=(400, 503)),
    Operation("GET", "/accounts/me/balances/", "The caller's balances per asset (auth on)",
              {200: BalancesView}, failures=(404, 503)),
    Operation("GET", "/accounts/me/ledger/", "The caller's ledger postings, newest first",
              {200: LedgerList}, query=PAGE_QUERY, failures=(400, 404, 503)),
    Operation("GET", "/accounts/{user_id}/balances/", "A user's balances per asset (admin)",
              {200: BalancesView}, failures=(400, 503), role="admin"),
    Operation("GET", "/accounts/{user_id}/ledger/", "A user's ledger postings (admin)",
              {200: LedgerList}, query=PAGE_QUERY, failures=(400, 503), role="admin"),
    *TRANSFER_OPERATIONS,
    Operation("POST", "/admin/keys/", "Create an API key (its secret is shown this once)",
              {201: IssuedKey}, body=NewKey, failures=(400, 413, 503), role="admin",
              auth_only=True),
    Operation("DELETE", "/admin/keys/{key_id}/", "Revoke an API key", {200: RevokedKey},
              failures=(400, 404, 409, 503), role="admin", auth_only=True),
    *COMMON_OPERATIONS,
]
