"""Assets and their amounts: every balance, hold, transfer and fee is an integer count of
asset units, 10**-ASSET_DECIMALS of the asset, whatever instrument moves it.

One scale for every asset keeps amounts comparable across instruments: a quantity of
base is `quantity * BASE_UNIT` units, a price of an instrument with `decimals` places is
`price * 10**(ASSET_DECIMALS - decimals)` units of its quote. Six places hold any price
grid the instruments file accepts with funding on, and a whole order's worth (largest
price times largest quantity) in a signed 64-bit integer, as msgpack carries it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from common.instruments import Instrument, format_units, parse_decimal

ASSET_DECIMALS = 6
BASE_UNIT: int = 10**ASSET_DECIMALS  # asset units in one whole unit of an asset
MAX_AMOUNT = 2**62  # no balance or single amount reaches this (a 64-bit integer holds it)
MAX_TRANSFER = 10**12 * BASE_UNIT  # a deposit or withdrawal is below a trillion


def price_factor(instrument: Instrument) -> int:
    """Asset units of quote in one price unit of `instrument`."""
    if instrument.decimals > ASSET_DECIMALS:
        raise ValueError(f"{instrument.symbol}: a tick finer than {ASSET_DECIMALS} decimals "
                         "cannot be funded")
    factor: int = 10 ** (ASSET_DECIMALS - instrument.decimals)
    return factor


def homes(instruments: Mapping[str, Instrument]) -> dict[str, str]:
    """Each asset any instrument trades, with the first instrument (in file order) that
    trades it: a transfer of the asset is journaled in that instrument's sequence."""
    found: dict[str, str] = {}
    for symbol, instrument in instruments.items():
        found.setdefault(instrument.base_asset, symbol)
        found.setdefault(instrument.quote, symbol)
    return found


def format_amount(units: int) -> str:
    """Asset units as a decimal string with every place ("1000.000000")."""
    return format_units(units, ASSET_DECIMALS)


def to_decimal(units: int) -> Decimal:
    return Decimal(units).scaleb(-ASSET_DECIMALS)


def parse_amount(raw: str | int | float) -> int | None:
    """Asset units of a positive decimal amount below a trillion, or None if it is not one
    on the scale."""
    value = None if isinstance(raw, bool) else parse_decimal(raw)
    if value is None or value <= 0:
        return None
    scaled = value.scaleb(ASSET_DECIMALS)
    if scaled != scaled.to_integral_value() or scaled >= MAX_TRANSFER:
        return None
    return int(scaled)
