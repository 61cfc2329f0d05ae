"""Candles (OHLCV) of the projected trades: rolled up per minute as trades are projected,
grouped into longer intervals when asked for.

`record` runs in the projection's transaction with the trades of one batch: it folds
them into one row per instrument and minute (`minute_candles`) and merges those into the
`candles` table. The merge orders by trade number, never by arrival: open is the price
of the lowest trade number seen, close that of the highest, and a batch whose trade
numbers the row holds already (a batch written again) changes nothing.

`read` answers `GET /candles/`: the one-minute rows of a time range, read by primary
key and, for longer intervals, grouped by `date_bin` (aligned to the epoch, so a day is
a UTC day), oldest first. Candles are whole: the range is widened to interval bounds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import msgspec

from common.instruments import Instrument
from common.views import Candle, CandleList
from svc_trades.reading import fetch_row
from svc_trades.rows import (
    EPOCH,
    CandleRow,
    TradeRow,
    arrays,
    columns,
    instrument_of,
    micros,
    unnest,
)

MINUTE = 60_000_000  # microseconds
INTERVALS = {"1m": MINUTE, "5m": 5 * MINUTE, "15m": 15 * MINUTE, "1h": 60 * MINUTE,
             "1d": 1440 * MINUTE}
DEFAULT_INTERVAL = "1m"
DEFAULT_LIMIT, MAX_LIMIT = 500, 1500  # candles in one answer (a day of 1m fits)
# The microseconds a timestamptz range may span here (Python's datetime years 1-9999).
FIRST = micros(datetime.min.replace(tzinfo=UTC))
LAST = micros(datetime.max.replace(tzinfo=UTC))

MERGE = f"""
INSERT INTO candles AS c ({", ".join(columns(CandleRow))})
SELECT * FROM {unnest(CandleRow)}
ON CONFLICT (symbol, start) DO UPDATE SET
    open = CASE WHEN EXCLUDED.first_trade_no < c.first_trade_no THEN EXCLUDED.open
                ELSE c.open END,
    close = CASE WHEN EXCLUDED.last_trade_no > c.last_trade_no THEN EXCLUDED.close
                 ELSE c.close END,
    high = greatest(c.high, EXCLUDED.high),
    low = least(c.low, EXCLUDED.low),
    volume = c.volume + EXCLUDED.volume,
    trades = c.trades + EXCLUDED.trades,
    first_trade_no = least(c.first_trade_no, EXCLUDED.first_trade_no),
    last_trade_no = greatest(c.last_trade_no, EXCLUDED.last_trade_no)
WHERE EXCLUDED.first_trade_no > c.last_trade_no OR EXCLUDED.last_trade_no < c.first_trade_no
"""

# The answer in one statement: the instrument's projected seq, and its candles as the
# answer's JSON list. PostgreSQL writes the text: prices are stored on their instrument's
# grid with its decimals (as the trades are), so a NUMERIC's text is the API's decimal
# string, and times are RFC 3339 UTC with microseconds. A day of one-minute candles is
# then one string to decode, not 1,440 rows of Decimals.
_ANSWER = """
SELECT (SELECT seq FROM projection_symbols WHERE symbol = $1) AS seq,
       (SELECT coalesce(json_agg(json_build_object(
           'start', to_char(bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'open', open::text, 'high', high::text, 'low', low::text, 'close', close::text,
           'volume', volume, 'trades', trades) ORDER BY bucket), '[]')::text
        FROM ({candles}) AS c) AS candles"""
# One-minute candles are the rows as they are ...
MINUTES = _ANSWER.format(candles="""
    SELECT start AS bucket, open, high, low, close, volume, trades FROM candles
    WHERE symbol = $1 AND start >= $2 AND start < $3
    ORDER BY start LIMIT $4""")
# ... longer ones group them into buckets of $5 microseconds from the epoch, first and
# last by trade number.
GROUPED = _ANSWER.format(candles="""
    SELECT date_bin(make_interval(secs => $5::bigint / 1e6), start,
                    TIMESTAMPTZ '1970-01-01 00:00:00+00') AS bucket,
           (array_agg(open ORDER BY first_trade_no))[1] AS open,
           max(high) AS high, min(low) AS low,
           (array_agg(close ORDER BY last_trade_no DESC))[1] AS close,
           sum(volume)::bigint AS volume, sum(trades)::bigint AS trades
    FROM candles
    WHERE symbol = $1 AND start >= $2 AND start < $3
    GROUP BY bucket ORDER BY bucket LIMIT $4""")
_candles = msgspec.json.Decoder(list[Candle])


@dataclass
class _Minute:
    """A minute's candle being folded: prices as the trade rows hold them."""

    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    trades: int
    first: int
    last: int


def minute_candles(trades: Iterable[TradeRow]) -> list[CandleRow]:
    """The trades' one-minute candles, per instrument and minute."""
    found: dict[tuple[str, datetime], _Minute] = {}
    opens: dict[tuple[str, datetime], Decimal] = {}
    for trade in trades:
        key = (trade.symbol, trade.execution_timestamp.replace(second=0, microsecond=0))
        price, number = trade.price, trade.trade_no
        minute = found.get(key)
        if minute is None:
            found[key] = _Minute(price, price, price, trade.quantity, 1, number, number)
            opens[key] = price
            continue
        minute.high, minute.low = max(minute.high, price), min(minute.low, price)
        minute.volume += trade.quantity
        minute.trades += 1
        if number < minute.first:
            minute.first, opens[key] = number, price
        if number > minute.last:
            minute.last, minute.close = number, price
    return [CandleRow(symbol=symbol, start=start, open=opens[symbol, start], high=m.high,
                      low=m.low, close=m.close, volume=m.volume, trades=m.trades,
                      first_trade_no=m.first, last_trade_no=m.last)
            for (symbol, start), m in found.items()]


async def record(conn: asyncpg.Connection, trades: Sequence[TradeRow]) -> None:
    """Merge a projected batch's trades into the candles, in the caller's transaction."""
    rows = minute_candles(trades)
    if rows:
        await conn.execute(MERGE, *arrays(rows))


@dataclass(frozen=True)
class CandleQuery:
    symbol: str
    interval: str
    since: datetime | None  # the candle holding it is the first
    until: datetime | None  # candles starting before it; None: now, the current included
    limit: int = DEFAULT_LIMIT


def bounds(query: CandleQuery, now: datetime) -> tuple[datetime, datetime]:
    """[since, until) widened to whole intervals; without `since`, the last `limit`."""
    size = INTERVALS[query.interval]
    until = micros(query.until or now)
    until = min(LAST, -(-until // size) * size)  # the end of the interval holding it
    if query.since is None:
        since = until - query.limit * size
    else:
        since = micros(query.since) // size * size
    since = max(FIRST, since)
    return EPOCH + timedelta(microseconds=since), EPOCH + timedelta(microseconds=until)


async def read(pool: asyncpg.Pool, query: CandleQuery, now: datetime,
               instruments: Mapping[str, Instrument]) -> CandleList:
    instrument_of(instruments, query.symbol)  # a configured instrument, or LookupError
    since, until = bounds(query, now)
    size = INTERVALS[query.interval]
    args = (query.symbol, since, until, query.limit)
    row = await (fetch_row(pool, MINUTES, *args) if size == MINUTE
                 else fetch_row(pool, GROUPED, *args, size))
    return CandleList(symbol=query.symbol, interval=query.interval,
                      as_of_seq=row["seq"] or 0, candles=_candles.decode(row["candles"]))
