"""A hot standby's state: the journal applied as the leader appends it, with the code
recovery uses (`Sequencer.replay`), so a takeover only reads the last few messages.

Every `EX_SNAPSHOT_EVERY` batches it follows, a standby writes the service snapshot from its
own state (`Sequencer.snapshot_followed`): the leader, finding a recent one stored, does
not pause matching to fork for its own.

It also notes which trades were published (`md.trades`, by whichever instance led): on a
takeover, the new leader hands the market data the trades of the batches it applied from
the journal (following, or rebuilding after a step-down) that nobody published, so the
trade feeds continue where the old leader stopped. A trade sent twice is dropped
by svc_stream (each feed forwards only a seq past the last it sent).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

import msgspec
import structlog
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from redis.asyncio import Redis

from common import cache, subjects
from common.messages import EventBatch, TradeExecuted
from common.tasks import stop_tasks
from svc_orders import journaling, metrics
from svc_orders.sequencer import Sequencer

log = structlog.get_logger(__name__)

POLL = 0.05  # seconds between looks at the journal's end
RECENT = 10_000  # batches with trades kept for a takeover to hand to the market data


class _Published(msgspec.Struct):
    """What a standby reads of an `md.trades` message."""

    symbol: str
    seq: int


_published_decoder = msgspec.json.Decoder(_Published)


class Follower:
    def __init__(self, nats: Nats, sequencer: Sequencer) -> None:
        self.nats, self.sequencer = nats, sequencer
        self.recent: deque[EventBatch] = deque(maxlen=RECENT)
        self.published: dict[str, int] = {}  # by symbol, the last seq seen on md.trades
        self._task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None

    async def watch_published(self) -> None:
        """Note every `md.trades` message, whoever leads (this instance too), for as long
        as the service runs."""
        self._subscription = await self.nats.subscribe(subjects.TRADES_WILDCARD,
                                                       cb=self._on_trades)

    async def close(self) -> None:
        await self.stop()
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None

    def start(self) -> None:
        """Follow the journal until `stop`."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await stop_tasks([self._task])
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.catch_up()
                self.sequencer.snapshot_followed()
            except Exception as error:  # NATS away, or a read cut short: try again
                log.warning("following the journal failed", error=repr(error))
            await asyncio.sleep(POLL)

    async def _on_trades(self, msg: Msg) -> None:
        try:
            published = _published_decoder.decode(msg.data)
        except msgspec.DecodeError:
            return
        if published.seq > self.published.get(published.symbol, 0):
            self.published[published.symbol] = published.seq

    async def catch_up(self) -> int:
        """Apply the journal up to its end as of now; the stream sequence reached."""
        sequencer = self.sequencer
        await sequencer.settled()  # a rebuild replaces the state: follow the new one
        end = await journaling.stream_last_seq(sequencer.js)
        metrics.STANDBY_LAG.set(end - sequencer.position)  # what this look had to apply
        if end > sequencer.position:
            applied = 0
            async for batches in sequencer.replay(sequencer.engine, sequencer.store,
                                                  sequencer.position + 1, end):
                self.note(batches)
                applied += len(batches)
            sequencer.position = end
            sequencer.followed(applied)
        return end

    def note(self, batches: list[EventBatch]) -> None:
        """Batches applied from the journal (following, or a rebuild): their trades may
        be ones no leader published."""
        self.recent.extend(batch for batch in batches
                           if any(type(event) is TradeExecuted for event in batch.events))

    async def published_before(self, redis: Redis) -> None:
        """For each instrument this instance never saw a trade update of (it started a
        moment ago), the newest trade in the cache counts as published: the leader
        caches each update before it sends it."""
        for symbol in {batch.symbol for batch in self.recent} - self.published.keys():
            try:
                newest = await redis.lindex(cache.trades_key(symbol), 0)
            except Exception:  # a cache: without it every noted trade goes out again
                return
            if newest is not None:
                self.published[symbol] = _published_decoder.decode(newest).seq

    def unpublished(self) -> list[EventBatch]:
        """The followed batches with trades that the leader was not seen to publish."""
        return [batch for batch in self.recent
                if batch.seq > self.published.get(batch.symbol, 0)]
