"""The JSON shapes users see, built from integer state at the edge.

Decimal values leave as strings on the instrument's grid; timestamps as RFC 3339 UTC with
microseconds. One encoder for every service, so REST, WebSocket and NATS market data
agree byte for byte. Views hold no reference cycles, so they are not tracked by the
garbage collector (`gc=False`): fewer objects for each collection to visit.
"""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

import msgspec

from common.instruments import Instrument
from common.messages import TradeExecuted
from common.orderstate import OrderState

TRADE_ID_NAMESPACE = uuid.UUID("6f1c1f8e-3a52-4c53-9b8e-7d0c8f6a2b10")
AVERAGE_PRICE_PLACES = 8

json_encoder = msgspec.json.Encoder()


def timestamp(ns: int) -> str:
    """RFC 3339 UTC with microseconds: "2026-11-24T14:05:20.123456Z"."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return f"{_second(seconds)}.{rest // 1000:06d}Z"


@functools.lru_cache(maxsize=64)
def _second(seconds: int) -> str:
    """The date-time part, formatted once per second rather than once per call."""
    return f"{datetime.fromtimestamp(seconds, tz=UTC):%Y-%m-%dT%H:%M:%S}"


def trade_id(symbol: str, trade_no: int) -> str:
    """Stable UUID (version 8) of an instrument's n-th trade: every service and every
    replay agree on it. The symbol fixes the first 80 bits, the trade number the rest."""
    return f"{_trade_id_prefix(symbol)}{trade_no:012x}"


@functools.lru_cache(maxsize=1024)
def _trade_id_prefix(symbol: str) -> str:
    digits = uuid.uuid5(TRADE_ID_NAMESPACE, symbol).hex
    return f"{digits[:8]}-{digits[8:12]}-8{digits[13:16]}-8{digits[17:20]}-"


class TradeView(msgspec.Struct, kw_only=True, gc=False):
    trade_id: str
    symbol: str
    price: str
    quantity: int
    bid_order_id: str
    ask_order_id: str
    buyer_user_id: str | None
    seller_user_id: str | None
    aggressor_side: str
    execution_timestamp: str
    seq: int
    trade_no: int
    is_settled: bool = False
    settlement_timestamp: str | None = None


class OrderView(msgspec.Struct, kw_only=True, gc=False):
    order_id: str
    client_order_id: str | None
    symbol: str
    side: str
    type: str
    time_in_force: str
    post_only: bool
    stp: str
    quantity: int
    price: str | None
    remaining_quantity: int
    traded_quantity: int
    cancelled_quantity: int
    average_traded_price: str | None
    status: str
    is_active: bool
    cancel_reason: str | None
    reject_reason: str | None
    user_id: str | None
    created_at: str
    updated_at: str
    seq: int
    fills: list[TradeView] | msgspec.UnsetType = msgspec.UNSET  # only in command answers
    # The API key that placed the order: shown to admins only, for audit.
    issued_by_key: str | msgspec.UnsetType | None = msgspec.UNSET


class Level(msgspec.Struct, array_like=False, gc=False):
    price: str
    quantity: int
    orders: int


class BookMessage(msgspec.Struct, kw_only=True):
    """`md.book.<SYMBOL>` and the /ws/orderbook/ message."""

    type: Literal["snapshot", "update"]
    channel: Literal["orderbook"] = "orderbook"
    symbol: str
    seq: int
    timestamp: str
    bids: list[Level]
    asks: list[Level]


class TradesMessage(msgspec.Struct, kw_only=True):
    """`md.trades.<SYMBOL>` and the /ws/trades/ message."""

    type: Literal["snapshot", "update"]
    channel: Literal["trades"] = "trades"
    symbol: str
    seq: int
    trades: list[TradeView]


class PublicTradeView(msgspec.Struct, kw_only=True, gc=False, forbid_unknown_fields=True):
    """A trade as anyone may see it with auth on: no user ids, no order ids. Unknown
    fields are refused, so a full `TradeView` can never pass for a public one."""

    trade_id: str
    symbol: str
    price: str
    quantity: int
    aggressor_side: str
    execution_timestamp: str
    seq: int
    trade_no: int
    is_settled: bool = False
    settlement_timestamp: str | None = None


class PublicTradesMessage(msgspec.Struct, kw_only=True):
    """`md.trades.<SYMBOL>` and the /ws/trades/ message with auth on."""

    type: Literal["snapshot", "update"]
    channel: Literal["trades"] = "trades"
    symbol: str
    seq: int
    trades: list[PublicTradeView]


class FillView(msgspec.Struct, kw_only=True, gc=False):
    """One side of a trade, for the user who owns that side's order: the counterparty's
    user and order stay unnamed."""

    trade_id: str
    symbol: str
    order_id: str
    side: Literal["buy", "sell"]
    price: str
    quantity: int
    liquidity: Literal["maker", "taker"]
    execution_timestamp: str
    seq: int
    trade_no: int


class OrdersMessage(msgspec.Struct, kw_only=True):
    """`md.orders.<user>` and the WebSocket `orders` channel: what one journaled command
    did to one user's orders (each as it stands after the command) and its fills."""

    type: Literal["update"] = "update"
    channel: Literal["orders"] = "orders"
    symbol: str
    seq: int
    orders: list[OrderView]
    fills: list[FillView]


class Candle(msgspec.Struct, kw_only=True, gc=False):
    """OHLCV of one interval's trades: `start` opens the interval; open and close are the
    prices of its first and last trade (journal order), volume the quantity traded."""

    start: str
    open: str
    high: str
    low: str
    close: str
    volume: int
    trades: int


class CandleList(msgspec.Struct, kw_only=True):
    """`GET /candles/`: oldest first, intervals without trades left out. `as_of_seq` is
    the instrument's last projected command: every trade up to it is counted."""

    symbol: str
    interval: str
    as_of_seq: int
    candles: list[Candle]


class CandlesMessage(msgspec.Struct, kw_only=True):
    """The WebSocket `candles` channel (1m): a snapshot of the recent candles, then on
    every trade the candle it changed (a new one when a trade opens a new minute)."""

    type: Literal["snapshot", "update"]
    channel: Literal["candles"] = "candles"
    symbol: str
    seq: int
    interval: Literal["1m"] = "1m"
    candles: list[Candle]


def trade_view(event: TradeExecuted, instrument: Instrument) -> TradeView:
    return TradeView(
        trade_id=trade_id(event.symbol, event.trade_no), symbol=event.symbol,
        price=instrument.format_price(event.price), quantity=event.quantity,
        bid_order_id=event.buy_order_id, ask_order_id=event.sell_order_id,
        buyer_user_id=event.buyer_user_id, seller_user_id=event.seller_user_id,
        aggressor_side=event.aggressor_side.value,
        execution_timestamp=timestamp(event.timestamp), seq=event.seq,
        trade_no=event.trade_no)


def average_price(notional: int, traded: int, instrument: Instrument) -> str | None:
    """Volume-weighted average trade price, at least on the grid's decimals."""
    if not traded:
        return None
    if notional % traded == 0 and instrument.decimals <= AVERAGE_PRICE_PLACES:
        return instrument.format_price(notional // traded)  # on the grid: no Decimal
    exact = (Decimal(notional) / traded).scaleb(-instrument.decimals)
    text = f"{exact.quantize(Decimal(1).scaleb(-AVERAGE_PRICE_PLACES)):f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(instrument.decimals, '0')}" if instrument.decimals else whole


def order_view(state: OrderState, instrument: Instrument) -> OrderView:
    return OrderView(
        order_id=state.order_id, client_order_id=state.client_order_id, symbol=state.symbol,
        side=state.side.value, type=state.type.value,
        time_in_force=state.time_in_force.value, post_only=state.post_only,
        stp=state.stp.value, quantity=state.quantity,
        price=None if state.price is None else instrument.format_price(state.price),
        remaining_quantity=state.remaining, traded_quantity=state.traded,
        cancelled_quantity=state.cancelled,
        average_traded_price=average_price(state.notional, state.traded, instrument),
        status=state.status.value, is_active=state.is_active,
        cancel_reason=None if state.cancel_reason is None else state.cancel_reason.value,
        reject_reason=None if state.reject_reason is None else state.reject_reason.value,
        user_id=state.user_id, created_at=timestamp(state.created_at),
        updated_at=timestamp(state.updated_at), seq=state.seq)


def levels(depth: list[tuple[int, int, int]], instrument: Instrument) -> list[Level]:
    return [Level(instrument.format_price(price), quantity, orders)
            for price, quantity, orders in depth]


def public_trade(trade: TradeView) -> PublicTradeView:
    return PublicTradeView(
        trade_id=trade.trade_id, symbol=trade.symbol, price=trade.price,
        quantity=trade.quantity, aggressor_side=trade.aggressor_side,
        execution_timestamp=trade.execution_timestamp, seq=trade.seq, trade_no=trade.trade_no,
        is_settled=trade.is_settled, settlement_timestamp=trade.settlement_timestamp)


def fills_of(trade: TradeView, user_id: str) -> list[FillView]:
    """The sides of `trade` whose order `user_id` owns (both in a self-trade)."""
    sides: tuple[tuple[str | None, Literal["buy", "sell"], str], ...] = (
        (trade.buyer_user_id, "buy", trade.bid_order_id),
        (trade.seller_user_id, "sell", trade.ask_order_id))
    return [FillView(trade_id=trade.trade_id, symbol=trade.symbol, order_id=order_id,
                     side=side, price=trade.price, quantity=trade.quantity,
                     liquidity="taker" if trade.aggressor_side == side else "maker",
                     execution_timestamp=trade.execution_timestamp, seq=trade.seq,
                     trade_no=trade.trade_no)
            for owner, side, order_id in sides if owner == user_id]
