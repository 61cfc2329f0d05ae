"""Instruments and the exact price grid.

Inside the system a price is an integer count of *price units* (10**-decimals of the quote
currency); an instrument's tick is a whole number of units. Decimal strings exist only at
the edges (HTTP, WebSocket, SQL), converted by the functions here so every service agrees.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import msgspec

DEFAULT_SYMBOL = "DEFAULT"
MAX_FEE_BPS = 1_000  # 10 %
MAX_EXPONENT = 30  # decimals beyond 10**±30 are refused before any arithmetic on them
# A symbol is one NATS subject token and part of Redis keys: no dots, wildcards or spaces.
Symbol = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
Asset = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


class Instrument(msgspec.Struct, frozen=True, kw_only=True):
    """Trading rules of one symbol, in integer units (see the module docstring)."""

    symbol: str
    decimals: int = 2
    tick: int = 1
    lot: int = 1
    min_price: int = 1
    max_price: int = 99_999_999
    min_quantity: int = 1
    max_quantity: int = 1_000_000
    session_close: str | None = None  # "HH:MM" UTC at which DAY orders expire
    base: str = ""  # the asset bought and sold; empty: an asset named like the symbol
    quote: str = "USD"  # the asset prices are in
    maker_fee_bps: int = 0  # fees in basis points of the trade's quote amount
    taker_fee_bps: int = 0

    @property
    def base_asset(self) -> str:
        return self.base or self.symbol

    @property
    def tick_size(self) -> str:
        return format_units(self.tick, self.decimals)

    def format_price(self, units: int) -> str:
        return format_units(units, self.decimals)

    def to_units(self, value: Decimal) -> int | None:
        """Exact price units of `value`, or None if it has more decimals than the grid."""
        scaled = value.scaleb(self.decimals)
        if not scaled.is_finite() or scaled != scaled.to_integral_value():
            return None
        return int(scaled)

    @property
    def prices(self) -> range:
        """Every valid price in units: `price in instrument.prices` is the whole rule."""
        return range(self.min_price, self.max_price + 1, self.tick)

    @property
    def quantities(self) -> range:
        """Every valid order quantity."""
        return range(self.min_quantity, self.max_quantity + 1, self.lot)

    def price_error(self, units: int) -> str | None:
        """Why `units` is not a valid price for this instrument, or None if it is."""
        if units in self.prices:
            return None
        if units % self.tick:
            return f"price must be a multiple of {self.tick_size}"
        return (f"price must be between {self.format_price(self.min_price)} "
                f"and {self.format_price(self.max_price)}")

    def quantity_error(self, quantity: int) -> str | None:
        """Why `quantity` is not a valid order quantity, or None if it is."""
        if quantity in self.quantities:
            return None
        if quantity % self.lot:
            return f"quantity must be a multiple of {self.lot}"
        return f"quantity must be between {self.min_quantity} and {self.max_quantity}"

    def __post_init__(self) -> None:
        if self.tick <= 0 or self.lot <= 0 or self.min_price % self.tick:
            raise ValueError(f"{self.symbol}: tick and lot must be positive, "
                             "min_price a multiple of the tick")
        if self.min_quantity % self.lot or not 0 < self.min_price <= self.max_price:
            raise ValueError(f"{self.symbol}: min_quantity must be a multiple of the lot "
                             "and 0 < min_price <= max_price")
        if not 0 < self.min_quantity <= self.max_quantity:
            raise ValueError(f"{self.symbol}: need 0 < min_quantity <= max_quantity")
        if not (0 <= self.maker_fee_bps <= MAX_FEE_BPS and 0 <= self.taker_fee_bps <= MAX_FEE_BPS):
            raise ValueError(f"{self.symbol}: fees must be 0 to {MAX_FEE_BPS} basis points")
        if self.base_asset == self.quote:
            raise ValueError(f"{self.symbol}: base and quote must be different assets")


DEFAULT_INSTRUMENT = Instrument(symbol=DEFAULT_SYMBOL)


def format_units(units: int, decimals: int) -> str:
    """Integer units as a decimal string with exactly `decimals` places ("150.25")."""
    if decimals == 0:
        return str(units)
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}"


# What a decimal string may look like: ASCII digits with an optional fraction, as the
# contract writes them ("150.25"). Python's Decimal alone would also take "1_000",
# " 1.00 ", "1e2" and other scripts' digits ("١٢"), none of which a client should send.
_DECIMAL_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def parse_decimal(text: str | int | float) -> Decimal | None:
    """A finite Decimal from a JSON string or number, or None if it is not one.

    Floats go through their shortest repr, so 150.25 arrives as Decimal("150.25").
    Absurd magnitudes ("1e999999") are refused: they are never valid and cost dearly.
    """
    if isinstance(text, str) and _DECIMAL_TEXT.fullmatch(text) is None:
        return None
    try:
        value = Decimal(repr(text)) if isinstance(text, float) else Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    if not value.is_finite() or (value and abs(value.adjusted()) > MAX_EXPONENT):
        return None
    return value


class InstrumentFile(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of the instruments file: decimal strings as a person writes them.

    Bounds left out default to one tick and to the largest price on the grid below
    1,000,000.
    """

    symbol: Symbol
    tick_size: str = "0.01"
    lot_size: int = 1
    min_price: str | None = None
    max_price: str | None = None
    min_quantity: int = 1
    max_quantity: int = 1_000_000
    session_close: str | None = None
    base: Asset | None = None  # the symbol when left out
    quote: Asset = "USD"
    maker_fee_bps: int = 0
    taker_fee_bps: int = 0

    def to_instrument(self) -> Instrument:
        tick = parse_decimal(self.tick_size)
        if tick is None or tick <= 0:
            raise ValueError(f"instrument {self.symbol}: tick_size must be a positive decimal")
        exponent = tick.normalize().as_tuple().exponent
        decimals = max(0, -exponent) if isinstance(exponent, int) else 0
        grid = Instrument(symbol=self.symbol, decimals=decimals)

        def units(text: str) -> int:
            value = parse_decimal(text)
            result = None if value is None else grid.to_units(value)
            if result is None:
                raise ValueError(f"instrument {self.symbol}: {text!r} is off its price grid")
            return result

        tick_units = units(self.tick_size)
        top = units("999999.99") if decimals >= 2 else 10**6 * 10**decimals - 1
        return Instrument(
            symbol=self.symbol, decimals=decimals, tick=tick_units, lot=self.lot_size,
            min_price=tick_units if self.min_price is None else units(self.min_price),
            max_price=(top // tick_units * tick_units if self.max_price is None
                       else units(self.max_price)),
            min_quantity=self.min_quantity, max_quantity=self.max_quantity,
            session_close=self.session_close, base=self.base or "", quote=self.quote,
            maker_fee_bps=self.maker_fee_bps, taker_fee_bps=self.taker_fee_bps)


def load_instruments(path: str | None) -> dict[str, Instrument]:
    """The instruments by symbol: the default one, plus those of a JSON file if given."""
    instruments = {DEFAULT_SYMBOL: DEFAULT_INSTRUMENT}
    if path:
        entries = msgspec.json.decode(Path(path).read_bytes(), type=list[InstrumentFile])
        for entry in entries:
            instruments[entry.symbol] = entry.to_instrument()
    return instruments
