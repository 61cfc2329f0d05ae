"""The `candles` channel (1m): the recent candles, then the current one on every trade.

Candles come from the trades: svc_trades rolls them up in PostgreSQL, svc_stream keeps
only each watched instrument's current candle, folded from the live trade messages
(`CandleFeed`), and sends it whole after every trade, so a late or repeated message
cannot leave a client with a wrong candle.

The hand-off from snapshot to live updates loses nothing, like the trades channel's
(see `feeds`): the subscription registers first (buffering), then the snapshot is asked
of svc_trades counting every trade up to the newest seq in svc_orders' Redis cache,
which svc_orders writes before it publishes, so every trade is in the snapshot, in the
buffer, or both (settled by seq). svc_trades waits a moment for its projection to get
there (`RecentCandles`). A feed's first snapshot seeds its current candle; trades that
came while the snapshot was read are folded on top of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Protocol

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as Nats

from common import subjects
from common.messages import encoder as msgpack_encoder
from common.queries import CandlesFound, QueryFailed, RecentCandles, reply_decoder
from common.views import Candle, CandlesMessage, json_encoder
from svc_stream.client import text_frame
from svc_stream.feeds import CandleSubscription
from svc_stream.market_cache import MarketCache

log = structlog.get_logger(__name__)

SNAPSHOT_CANDLES = 500  # one-minute candles in a snapshot: the last 8 hours or so


class TradeLike(Protocol):
    """What a candle needs of a trade (full and public trades alike)."""

    price: str
    quantity: int
    execution_timestamp: str


def minute(moment: str) -> str:
    """The start of the minute of an RFC 3339 UTC timestamp as the services write it."""
    return f"{moment[:16]}:00.000000Z"


def fold(current: Candle | None, trades: Sequence[TradeLike]) -> list[Candle]:
    """The candles `trades` change, starting from `current` (changed in place): the current
    one, or a new one when a trade opens a later minute. A trade of an earlier minute
    (the engine's clock stepped back) is left to the REST candles."""
    changed: list[Candle] = []
    for trade in trades:
        start = minute(trade.execution_timestamp)
        if current is None or start > current.start:
            current = Candle(start=start, open=trade.price, high=trade.price,
                             low=trade.price, close=trade.price, volume=0, trades=0)
        elif start < current.start:
            continue
        price = Decimal(trade.price)
        if price > Decimal(current.high):
            current.high = trade.price
        if price < Decimal(current.low):
            current.low = trade.price
        current.close = trade.price
        current.volume += trade.quantity
        current.trades += 1
        if not changed or changed[-1] is not current:
            changed.append(current)
    return changed


class CandleFeed:
    """One instrument's current candle and the subscriptions that watch it.

    Until its first snapshot arrives (`seed`) it keeps the trades it is given; from then
    on each trade message past its seq updates the candle and goes to every
    subscription as one frame, encoded once.
    """

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.subs: set[CandleSubscription] = set()
        self.seq = 0
        self.current: Candle | None = None
        self.pending: list[tuple[int, Sequence[TradeLike]]] | None = []  # None: seeded

    def trades(self, seq: int, trades: Sequence[TradeLike]) -> None:
        if self.pending is not None:
            self.pending.append((seq, trades))
        elif seq > self.seq:
            self._apply(seq, trades)

    def restart(self) -> None:
        """Trades may have been missed (NATS reconnected): keep the new ones until the
        next `seed`."""
        if self.pending is None:
            self.pending = []

    def seed(self, seq: int, candles: list[Candle]) -> None:
        """A snapshot after a (re)start: its newest candle is current, the trades kept
        meanwhile past its seq are folded on top. Subscriptions already live get the
        current candle (one just starting has it in its snapshot and drops it by seq)."""
        if self.pending is None:
            return
        pending, self.pending = self.pending, None
        self.seq = seq
        self.current = msgspec.structs.replace(candles[-1]) if candles else None
        if self.current is not None:
            self._send(seq, [self.current])
        for message_seq, trades in pending:
            if message_seq > self.seq:
                self._apply(message_seq, trades)

    def _apply(self, seq: int, trades: Sequence[TradeLike]) -> None:
        self.seq = seq
        changed = fold(self.current, trades)
        if not changed:
            return
        self.current = changed[-1]
        self._send(seq, changed)

    def _send(self, seq: int, candles: list[Candle]) -> None:
        frame = text_frame(json_encoder.encode(CandlesMessage(
            type="update", symbol=self.symbol, seq=seq, candles=candles)))
        for sub in self.subs:
            sub.deliver(seq, frame)


class CandleSource:
    """Snapshots of the `candles` channel: svc_trades' recent candles over NATS."""

    def __init__(self, nc: Nats, market_cache: MarketCache, timeout: float) -> None:
        self.nc, self.market_cache, self.timeout = nc, market_cache, timeout

    async def recent(self, symbol: str) -> tuple[int, list[Candle]]:
        """The latest one-minute candles and the seq they count to; none (seq 0) if
        svc_trades does not answer: the live trades then build the candles from here."""
        newest = await self.market_cache.newest_trade_seq(symbol)
        question = RecentCandles(symbol=symbol, seq=newest, limit=SNAPSHOT_CANDLES)
        try:
            reply = reply_decoder.decode((await self.nc.request(
                subjects.CANDLES_QUERY, msgpack_encoder.encode(question),
                timeout=self.timeout)).data)
        except (nats.errors.Error, TimeoutError, msgspec.DecodeError) as error:
            reason = type(error).__name__
        else:
            if isinstance(reply, CandlesFound):
                found = reply.candles
                if found.as_of_seq < newest:
                    log.warning("candle snapshot behind the trades", symbol=symbol,
                                as_of_seq=found.as_of_seq, newest=newest)
                return found.as_of_seq, found.candles
            reason = reply.reason if isinstance(reply, QueryFailed) else "unexpected reply"
        log.warning("no candle snapshot from svc_trades", symbol=symbol, reason=reason)
        return 0, []


async def catch_up(feeds: Mapping[str, CandleFeed], source: CandleSource) -> None:
    """After a NATS reconnect: the trades published meanwhile never reached the feeds, so
    each starts again from a new snapshot, and live clients get its current candle."""
    for feed in feeds.values():
        feed.restart()
    symbols = list(feeds)
    for symbol, (seq, recent) in zip(symbols, await asyncio.gather(
            *(source.recent(symbol) for symbol in symbols)), strict=True):
        still = feeds.get(symbol)
        if still is not None:  # its last subscriber may have left meanwhile
            still.seed(seq, recent)


def snapshot(symbol: str, seq: int, candles: list[Candle]) -> bytes:
    return json_encoder.encode(CandlesMessage(type="snapshot", symbol=symbol, seq=seq,
                                              candles=candles))
