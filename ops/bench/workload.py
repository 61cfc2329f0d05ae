"""The standard workload (../shared/bench/README.md) as engine commands."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import msgspec

from common.instruments import DEFAULT_INSTRUMENT, DEFAULT_SYMBOL, Instrument
from common.messages import (
    CancelOrder,
    Command,
    ModifyOrder,
    OrderType,
    PlaceOrder,
    Side,
    TimeInForce,
)


class Line(msgspec.Struct, frozen=True):
    """One workload line (see the generator's docstring)."""

    op: str
    oid: int
    sym: str = ""
    side: str = ""
    type: str = "limit"
    price: str | None = None
    qty: int = 0
    user: int = 0


def symbol_of(name: str) -> str:
    """The workload's first symbol maps to the default instrument (tick 0.01)."""
    return DEFAULT_SYMBOL if name == "SYM0" else name


def parse(path: Path) -> tuple[list[Command], dict[str, Instrument]]:
    decoder = msgspec.json.Decoder(Line)
    instruments = {DEFAULT_SYMBOL: DEFAULT_INSTRUMENT}
    commands: list[Command] = []
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            line = decoder.decode(raw)
            price = None if line.price is None else DEFAULT_INSTRUMENT.to_units(
                Decimal(line.price))
            if line.op == "new":
                symbol = symbol_of(line.sym)
                instruments.setdefault(symbol, Instrument(symbol=symbol))
                market = line.type == "market"
                commands.append(PlaceOrder(
                    order_id=str(line.oid), symbol=symbol, side=Side(line.side),
                    quantity=line.qty, price=price,
                    type=OrderType.MARKET if market else OrderType.LIMIT,
                    time_in_force=TimeInForce.IOC if market else TimeInForce.GTC,
                    user_id=str(line.user), timestamp=number))
            elif line.op == "cancel":
                commands.append(CancelOrder(order_id=str(line.oid), timestamp=number))
            else:
                commands.append(ModifyOrder(order_id=str(line.oid), price=price,
                                            timestamp=number))
    return commands, instruments
