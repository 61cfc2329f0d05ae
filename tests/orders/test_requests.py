"""The order API's fast readings agree with the general ones they stand in for."""

import uuid
from decimal import Decimal

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from common.http import parse_uuid
from common.instruments import DEFAULT_INSTRUMENT
from svc_orders.requests import PLAIN_DECIMAL, plain_units

PLAIN = st.from_regex(PLAIN_DECIMAL, fullmatch=True)


@given(PLAIN, st.integers(min_value=0, max_value=8))
def test_a_plain_price_has_the_units_the_decimal_reading_gives(
        text: str, decimals: int) -> None:
    plain = PLAIN_DECIMAL.fullmatch(text)
    assert plain is not None
    instrument = msgspec.structs.replace(DEFAULT_INSTRUMENT, decimals=decimals)
    assert plain_units(plain, decimals) == instrument.to_units(Decimal(text))


@given(st.uuids(), st.booleans())
def test_a_uuid_in_any_case_reads_as_the_uuid_module_writes_it(
        value: uuid.UUID, upper: bool) -> None:
    text = str(value).upper() if upper else str(value)
    assert parse_uuid(text) == str(uuid.UUID(text))
