"""svc_trades' operations for its OpenAPI document (`/openapi.json`)."""

from __future__ import annotations

from common.accountviews import BalancesView, LedgerList, TransferView
from common.listing import OrderList
from common.openapi import (
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
from common.transfers import TransferBody
from common.views import CandleList, TradeView
from svc_trades.api import DEFAULT_DEPTH, FLAG_WORDS, MAX_DEPTH, OrderBook, Settled
from svc_trades.candles import DEFAULT_INTERVAL, DEFAULT_LIMIT, INTERVALS, MAX_LIMIT
from svc_trades.repository import TradeList

MOMENT = {"type": "string", "format": "date-time"}

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
    Operation("GET", "/trades/{trade_id}/", "One trade", {200: TradeView},
              failures=(400, 404)),
    Operation("POST", "/trades/{trade_id}/settle/", "Settle a trade, once", {200: Settled},
              failures=(400, 404, 409)),
    Operation("GET", "/orderbook/", "Aggregated book, best levels first", {200: OrderBook},
              query={"symbol": text_param("instrument (default DEFAULT); unknown: 404"),
                     "depth": int_param("levels per side", 1, MAX_DEPTH, DEFAULT_DEPTH)},
              failures=(400, 404, 503)),
    Operation("GET", "/candles/", "OHLCV candles of the trades, oldest first",
              {200: CandleList}, query={
                  "symbol": text_param("instrument (default DEFAULT); unknown: 404"),
                  "interval": Param(f"candle length (default {DEFAULT_INTERVAL})",
                                    {"type": "string", "enum": list(INTERVALS)}),
                  "since": Param("RFC 3339 time: the candle holding it comes first", MOMENT),
                  "until": Param("RFC 3339 time: candles starting before it (default now, "
                                 "the current candle included)", MOMENT),
                  "limit": int_param("most candles; without since, the latest", 1,
                                     MAX_LIMIT, DEFAULT_LIMIT)},
              failures=(400, 404, 503)),
    Operation("GET", "/orders/", "Orders, newest first, from the projection",
              {200: OrderList}, query=ORDER_LIST_QUERY, failures=(400, 503)),
    Operation("GET", "/accounts/me/balances/", "The caller's balances per asset (auth on)",
              {200: BalancesView}, failures=(404, 503)),
    Operation("GET", "/accounts/me/ledger/", "The caller's ledger postings, newest first",
              {200: LedgerList}, query=PAGE_QUERY, failures=(400, 404, 503)),
    Operation("GET", "/accounts/{user_id}/balances/", "A user's balances per asset (admin)",
              {200: BalancesView}, failures=(400, 503)),
    Operation("GET", "/accounts/{user_id}/ledger/", "A user's ledger postings (admin)",
              {200: LedgerList}, query=PAGE_QUERY, failures=(400, 503)),
    Operation("POST", "/accounts/{user_id}/deposits/",
              "Deposit into a user's available balance (admin; funding on)",
              {201: TransferView, 200: TransferView}, body=TransferBody,
              failures=(400, 409, 413, 503)),
    Operation("POST", "/accounts/{user_id}/withdrawals/",
              "Withdraw from a user's available balance (admin; funding on)",
              {201: TransferView, 200: TransferView}, body=TransferBody,
              failures=(400, 409, 413, 503)),
]
