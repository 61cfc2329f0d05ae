"""The projection's rows: each table's columns, named once, and rows <-> integer state.

A row type is a Struct whose fields are its table's columns in COPY order. The
projection builds rows by column name (`OrderRow(order_id=..., ...)`), the writes take
the column lists, SQL types and `unnest` arrays from here, and the reads select the
same names and turn them back into `OrderState` and `TradeView` by name. Prices are
NUMERIC on the instrument's grid (Decimals, never float); times are timestamptz at
microsecond precision.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NewType

import msgspec

from common.instruments import Instrument
from common.messages import (
    CancelReason,
    OrderStatus,
    OrderType,
    RejectReason,
    Side,
    Stp,
    TimeInForce,
    TradeExecuted,
)
from common.orderstate import OrderState
from common.views import TradeView, timestamp, trade_view

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)

Uuid = NewType("Uuid", str)  # a uuid column, written as its text
Int4 = NewType("Int4", int)  # an integer column (a plain int is a bigint one)


def storable(text: str) -> str:
    """`text` as PostgreSQL can hold it: text columns cannot hold NUL, which a journal
    may (written before the API refused control characters, or by hand). U+FFFD stands
    in, so a value no row can take never stops the projection."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def storable_or_none(text: str | None) -> str | None:
    return None if text is None else storable(text)


class Row(msgspec.Struct, frozen=True, gc=False):
    """A row to write; `values` gives it in column order, as COPY and `unnest` take it."""


class OrderRow(Row, frozen=True, gc=False):
    """A new order."""

    order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    post_only: bool
    stp: str
    user_id: str | None
    client_order_id: str | None
    price: Decimal | None
    quantity: int
    remaining_quantity: int
    traded_quantity: int
    cancelled_quantity: int
    notional: Decimal
    status: str
    cancel_reason: str | None
    reject_reason: str | None
    created_at: datetime
    updated_at: datetime
    seq: int
    issued_by_key: str | None


class OrderUpdate(Row, frozen=True, gc=False):
    """What a later event can change in an order (keyed by `order_id`)."""

    order_id: str
    price: Decimal | None
    quantity: int
    remaining_quantity: int
    traded_quantity: int
    cancelled_quantity: int
    notional: Decimal
    status: str
    cancel_reason: str | None
    reject_reason: str | None
    updated_at: datetime
    seq: int


class TradeRow(Row, frozen=True, gc=False):
    """A new trade (settlement fills in the last two columns of `TRADE_COLUMNS` later)."""

    trade_id: Uuid
    symbol: str
    trade_no: int
    seq: int
    price: Decimal
    quantity: int
    buy_order_id: str
    sell_order_id: str
    buyer_user_id: str | None
    seller_user_id: str | None
    aggressor_side: str
    execution_timestamp: datetime


class CandleRow(Row, frozen=True, gc=False):
    """One instrument's trades of one minute, or a batch's share of them (merged into the
    stored row by trade number: see `svc_trades.candles`)."""

    symbol: str
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    trades: int
    first_trade_no: int
    last_trade_no: int


values = msgspec.structs.astuple


def columns(row: type[Row]) -> tuple[str, ...]:
    return row.__struct_fields__


_SQL_TYPES: dict[Any, str] = {str: "text", Uuid: "uuid", bool: "boolean", int: "bigint",
                              Int4: "integer", Decimal: "numeric", datetime: "timestamptz"}


def sql_types(row: type[Row]) -> tuple[str, ...]:
    """The SQL type of each column, from its Python type (None allowed or not)."""
    hints = typing.get_type_hints(row)
    found = []
    for name in columns(row):
        hint = hints[name]
        if isinstance(hint, types.UnionType):
            [hint] = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        found.append(_SQL_TYPES[hint])
    return tuple(found)


def unnest(row: type[Row]) -> str:
    """`unnest` of one typed array parameter per column of `row` ($1, $2 ...), the rows
    `arrays` passes: many rows in one statement."""
    typed = ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(sql_types(row), 1))
    return f"unnest({typed}) AS u({', '.join(columns(row))})"


def arrays(rows: Sequence[Row]) -> list[tuple[Any, ...]]:
    """Rows as one sequence per column: the arguments of `unnest`."""
    return list(zip(*map(values, rows), strict=True))


ORDER_COLUMNS = ", ".join(columns(OrderRow))
TRADE_COLUMNS = ", ".join((*columns(TradeRow), "is_settled", "settlement_timestamp"))


# ---- times, prices and rows back into integer state ---------------------------------


def moment(ns: int) -> datetime:
    """Nanoseconds as the timestamptz PostgreSQL stores (microseconds, truncated)."""
    return EPOCH + timedelta(microseconds=ns // 1000)


def micros(moment: datetime) -> int:
    """A timestamptz as integer microseconds since the epoch (exact)."""
    return (moment - EPOCH) // MICROSECOND


def units(value: Decimal, instrument: Instrument) -> int:
    """A stored NUMERIC back into the instrument's integer price units."""
    result = instrument.to_units(value)
    if result is None:
        raise ValueError(f"{value} is off the price grid of {instrument.symbol}")
    return result


def instrument_of(instruments: Mapping[str, Instrument], symbol: str) -> Instrument:
    try:
        return instruments[symbol]
    except KeyError:
        raise LookupError(f"instrument {symbol!r} is projected but not configured") from None


def order_state(row: Mapping[str, Any], instruments: Mapping[str, Instrument]) -> OrderState:
    """The `OrderState` a projected row holds (timestamps at microsecond precision)."""
    instrument = instrument_of(instruments, row["symbol"])
    price = row["price"]
    return OrderState(
        order_id=row["order_id"], symbol=row["symbol"], side=Side(row["side"]),
        type=OrderType(row["type"]), time_in_force=TimeInForce(row["time_in_force"]),
        post_only=row["post_only"], stp=Stp(row["stp"]), user_id=row["user_id"],
        client_order_id=row["client_order_id"],
        price=None if price is None else units(price, instrument),
        quantity=row["quantity"], remaining=row["remaining_quantity"],
        traded=row["traded_quantity"], cancelled=row["cancelled_quantity"],
        notional=units(row["notional"], instrument), status=OrderStatus(row["status"]),
        cancel_reason=None if row["cancel_reason"] is None
        else CancelReason(row["cancel_reason"]),
        reject_reason=None if row["reject_reason"] is None
        else RejectReason(row["reject_reason"]),
        created_at=micros(row["created_at"]) * 1000,
        updated_at=micros(row["updated_at"]) * 1000, seq=row["seq"],
        issued_by_key=row["issued_by_key"])


def trade_of(row: Mapping[str, Any], instruments: Mapping[str, Instrument]) -> TradeView:
    """A stored trade through the same `trade_view` the live feeds use."""
    instrument = instrument_of(instruments, row["symbol"])
    event = TradeExecuted(
        seq=row["seq"], timestamp=micros(row["execution_timestamp"]) * 1000,
        symbol=row["symbol"], trade_no=row["trade_no"], price=units(row["price"], instrument),
        quantity=row["quantity"], buy_order_id=row["buy_order_id"],
        sell_order_id=row["sell_order_id"], aggressor_side=Side(row["aggressor_side"]),
        buyer_user_id=row["buyer_user_id"], seller_user_id=row["seller_user_id"])
    view = trade_view(event, instrument)
    view.is_settled = row["is_settled"]
    settled_at = row["settlement_timestamp"]
    view.settlement_timestamp = None if settled_at is None else timestamp(
        micros(settled_at) * 1000)
    return view
