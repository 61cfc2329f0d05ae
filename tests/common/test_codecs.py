"""Pure edges: prices and decimals, timestamps, configuration, message round trips."""

import os
import subprocess
import sys
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.config import load_settings
from common.instruments import (
    DEFAULT_INSTRUMENT,
    Instrument,
    InstrumentFile,
    format_units,
    load_instruments,
    parse_decimal,
)
from common.messages import (
    CancelReason,
    EventBatch,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderModified,
    OrderRejected,
    PlaceOrder,
    RejectReason,
    Side,
    TradeExecuted,
    batch_decoder,
    command_decoder,
    encoder,
)
from common.views import average_price, timestamp, trade_id


@given(st.integers(-10**15, 10**15), st.integers(0, 8))
def test_price_units_round_trip_through_text(units: int, decimals: int) -> None:
    grid = Instrument(symbol="X", decimals=decimals)
    text = format_units(units, decimals)
    parsed = parse_decimal(text)
    assert parsed is not None
    assert grid.to_units(parsed) == units


@pytest.mark.parametrize(("raw", "units"), [
    ("150.25", 15025), (150.25, 15025), (150, 15000), ("0.1", 10), (1e2, 10000),
    ("150.250", 15025), ("150.251", None), ("0.001", None),
])
def test_to_units_is_exact(raw: str | float, units: int | None) -> None:
    value = parse_decimal(raw)
    assert value is not None
    assert DEFAULT_INSTRUMENT.to_units(value) == units


@pytest.mark.parametrize("raw", ["abc", "", "NaN", "inf", "-Infinity", "1e999999", "1e-99",
                                 "1,5", "1e2", "1_000", " 1.00 ", "1.00\n", "+1", ".5", "5.",
                                 "\u0661\u0662", "\uff11"])
def test_parse_decimal_refuses_garbage_and_absurd_sizes(raw: str) -> None:
    assert parse_decimal(raw) is None


def test_price_and_quantity_rules_say_why() -> None:
    coarse = InstrumentFile(symbol="C", tick_size="0.05", lot_size=10, min_price="1.00",
                            max_price="2.00", min_quantity=10, max_quantity=100).to_instrument()
    assert (coarse.decimals, coarse.tick, coarse.min_price, coarse.max_price) == (2, 5, 100, 200)
    assert coarse.price_error(105) is None
    assert coarse.price_error(103) == "price must be a multiple of 0.05"
    assert coarse.price_error(205) == "price must be between 1.00 and 2.00"
    assert coarse.quantity_error(15) == "quantity must be a multiple of 10"
    assert coarse.quantity_error(0) == "quantity must be between 10 and 100"
    assert coarse.quantity_error(100) is None
    with pytest.raises(ValueError, match="multiple of the tick"):
        InstrumentFile(symbol="B", tick_size="0.05", min_price="1.01").to_instrument()
    with pytest.raises(ValueError, match="off its price grid"):
        InstrumentFile(symbol="B", tick_size="0.5", min_price="1.25").to_instrument()


def test_instruments_file_adds_to_the_default(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "instruments.json"  # type: ignore[operator]
    path.write_text('[{"symbol": "BTC-USD", "tick_size": "0.5", "max_price": "100000"}]')
    instruments = load_instruments(str(path))
    assert set(instruments) == {"DEFAULT", "BTC-USD"}
    btc = instruments["BTC-USD"]
    assert (btc.format_price(15), btc.min_price, btc.max_price) == ("1.5", 5, 1_000_000)


@pytest.mark.parametrize("symbol", ["BTC.USD", "BTC USD", "*", ">", "", "A" * 33, "é"])
def test_instruments_file_refuses_symbols_that_break_subjects_or_keys(
        tmp_path: pytest.TempPathFactory, symbol: str) -> None:
    path = tmp_path / "instruments.json"  # type: ignore[operator]
    path.write_bytes(msgspec.json.encode([{"symbol": symbol}]))
    with pytest.raises(msgspec.ValidationError, match="symbol"):
        load_instruments(str(path))


def test_timestamps_and_averages() -> None:
    assert timestamp(1_764_000_000_123_456_789) == "2025-11-24T16:00:00.123456Z"
    assert timestamp(0) == "1970-01-01T00:00:00.000000Z"
    assert average_price(15025 * 3, 3, DEFAULT_INSTRUMENT) == "150.25"
    assert average_price(30051, 2, DEFAULT_INSTRUMENT) == "150.255"
    assert average_price(100, 3, DEFAULT_INSTRUMENT) == "0.33333333"
    assert average_price(0, 0, DEFAULT_INSTRUMENT) is None
    assert trade_id("DEFAULT", 1) == trade_id("DEFAULT", 1) != trade_id("DEFAULT", 2)


def _decimal_average(notional: int, traded: int, decimals: int) -> str:
    """The average price the slow, obviously exact way: Decimal, 8 places, grid padding."""
    exact = (Decimal(notional) / traded).scaleb(-decimals)
    text = f"{exact.quantize(Decimal(1).scaleb(-8)):f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(decimals, '0')}" if decimals else whole


@given(st.integers(0, 10**12), st.integers(1, 10**9), st.integers(0, 8))
def test_average_price_on_the_grid_equals_the_exact_decimal(units: int, traded: int,
                                                           decimals: int) -> None:
    instrument = msgspec.structs.replace(DEFAULT_INSTRUMENT, decimals=decimals)
    assert (average_price(units * traded, traded, instrument)
            == _decimal_average(units * traded, traded, decimals))


def test_settings_from_environment_hide_secrets() -> None:
    settings = load_settings({"EX_ORDERS_PORT": "9000", "EX_JOURNAL_TIMEOUT": "0.5",
                              "EX_PG_DSN": "postgresql://app:hunter2@db/x", "OTHER": "1"})
    assert (settings.orders_port, settings.journal_timeout) == (9000, 0.5)
    assert "hunter2" not in repr(settings)
    with pytest.raises(ValueError, match="EX_ORDERS_PORT"):
        load_settings({"EX_ORDERS_PORT": "eighty"})
    assert load_settings({"EX_LOG_LEVEL": "debug"}).log_level == "debug"


@pytest.mark.parametrize(("variable", "value"), [
    ("EX_ORDERS_PORT", "0"), ("EX_TRADES_PORT", "65536"), ("EX_STREAM_PORT", "-1"),
    ("EX_PROJECTION_BATCH", "0"), ("EX_SNAPSHOT_EVERY", "-5"), ("EX_WS_QUEUE", "0"),
    ("EX_MAX_BODY_BYTES", "0"), ("EX_JOURNAL_TIMEOUT", "0"), ("EX_BOOK_INTERVAL", "-0.1"),
    ("EX_BOOK_HEARTBEAT", "nan"), ("EX_WS_HEARTBEAT", "0"), ("EX_LOG_LEVEL", "loud"),
    ("EX_LOG_FORMAT", "xml"), ("EX_PROJECTION_BATCH", "1.5"), ("EX_JOURNAL_TIMEOUT", "inf"),
])
def test_settings_out_of_range_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=variable):
        load_settings({variable: value})


def test_a_service_with_a_bad_setting_exits_naming_it_without_a_traceback() -> None:
    done = subprocess.run([sys.executable, "-m", "svc_trades"], capture_output=True, text=True,
                          env={**os.environ, "EX_PROJECTION_BATCH": "0"}, timeout=30,
                          check=False)
    assert done.returncode == 1
    assert "EX_PROJECTION_BATCH" in done.stderr
    assert "Traceback" not in done.stderr


PLACE = PlaceOrder(order_id="o1", symbol="DEFAULT", side=Side.BUY, quantity=5, price=100,
                   user_id="u", client_order_id="c", timestamp=7)


def test_every_event_survives_the_journal_codec() -> None:
    batch = EventBatch(symbol="DEFAULT", seq=3, events=[
        OrderAccepted(seq=3, order=PLACE),
        OrderRejected(seq=3, order=PLACE, reason=RejectReason.FOK_NOT_FILLABLE),
        TradeExecuted(seq=3, timestamp=7, symbol="DEFAULT", trade_no=1, price=100,
                      quantity=2, buy_order_id="o1", sell_order_id="o0",
                      aggressor_side=Side.BUY),
        OrderModified(seq=3, timestamp=7, order_id="o1", price=101, quantity=4, requeued=True),
        OrderCancelled(seq=3, timestamp=7, order_id="o1", quantity=2,
                       reason=CancelReason.SELF_TRADE),
        OrderExpired(seq=3, timestamp=7, order_id="o1", quantity=1),
    ])
    assert batch_decoder.decode(encoder.encode(batch)) == batch
    assert command_decoder.decode(encoder.encode(PLACE)) == PLACE
    with pytest.raises(msgspec.DecodeError):
        batch_decoder.decode(b"\xc1garbage")
    assert Decimal(format_units(-5, 2)) == Decimal("-0.05")
