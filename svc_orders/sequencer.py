"""The sequencer: the one place where commands meet the engine and the journal.

A command is matched and its batch buffered for JetStream in one step of the event loop,
so journal order is engine order; the caller then awaits the acknowledgement
concurrently with other commands (pipelined). If an append fails or times out, the
sequencer fences: it refuses commands (503), lets the outstanding appends settle, and
rebuilds engine and order store from the newest snapshot plus the journal — exactly
what a restart would do — so memory never runs ahead of the journal for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping

import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.object_store import ObjectStore

from common.instruments import Instrument
from common.messages import Command, EventBatch
from common.orderstate import OrderState
from svc_orders import journal, metrics, snapshots
from svc_orders.journal import Journal
from svc_orders.matching import Exchange
from svc_orders.store import OrderStore

log = structlog.get_logger(__name__)

MAX_IN_FLIGHT = 20_000  # appends awaiting their acknowledgement before 503s


class Unavailable(Exception):
    """The command was not taken (or not confirmed): answer 503."""


class Sequencer:
    def __init__(self, js: JetStreamContext, journal: Journal, bucket: ObjectStore,
                 instruments: Mapping[str, Instrument], *, snapshot_every: int) -> None:
        self.js, self.bucket, self.instruments = js, bucket, instruments
        self.snapshot_every = snapshot_every
        self.engine = Exchange(instruments)
        self.store = OrderStore()
        self.journal = journal
        self.ready = False
        self.on_journaled: Callable[[EventBatch], None] = lambda batch: None
        self._since_snapshot = 0
        self._fence: asyncio.Task[None] | None = None
        self._snapshot_task: asyncio.Task[None] | None = None  # kept: tasks need a reference

    # ---- recovery ------------------------------------------------------------------

    async def recover(self) -> None:
        """Newest snapshot + the journal after it; then the journal chain restarts."""
        started = time.perf_counter()
        snapshot = await snapshots.load(self.bucket)
        engine = (Exchange.restore(snapshot.engine, self.instruments) if snapshot
                  else Exchange(self.instruments))
        store = OrderStore.restore(snapshot.store) if snapshot else OrderStore()
        end = await journal.stream_last_seq(self.js)
        replayed = 0
        async for _, batch in journal.read(self.js, (snapshot.stream_seq + 1
                                                     if snapshot else 1), end):
            if batch.seq <= engine.seq(batch.symbol):
                continue  # a duplicate of a batch the state already holds
            engine.apply(batch)
            store.apply(batch)
            replayed += 1
        engine.check()
        self.engine, self.store = engine, store
        self.journal.restart_chain(end)
        self._since_snapshot = replayed
        self.ready = True
        metrics.RECOVERIES.inc()
        log.info("recovered", snapshot_seq=snapshot.stream_seq if snapshot else 0,
                 replayed=replayed, stream_seq=end, resting=len(engine.orders),
                 seconds=round(time.perf_counter() - started, 3))

    # ---- commands ------------------------------------------------------------------

    def require_ready(self) -> None:
        """Refuse work while the state may hold what the journal does not."""
        if not self.ready:
            raise Unavailable("the order service is recovering; retry shortly")

    async def execute(self, command: Command, watch: str | None = None,
                      ) -> tuple[EventBatch, OrderState | None]:
        """Match and journal `command`; return its batch once JetStream acknowledged it,
        with a copy of order `watch` as it stood right after this command.
        """
        self.require_ready()
        if self.journal.in_flight >= MAX_IN_FLIGHT:
            raise Unavailable("the journal is behind; retry shortly")
        started = time.perf_counter()
        batch = self.engine.submit(command)
        metrics.MATCH_SECONDS.observe(time.perf_counter() - started)
        if not batch.seq:
            return batch, None
        self.store.apply(batch)
        watched = self.store.get(watch) if watch is not None else None
        if watched is not None:
            watched = msgspec.structs.replace(watched)
        try:
            ack = await self.journal.append(batch)
        except Exception as error:
            self._fail("append", error)
            raise Unavailable("the journal is unavailable") from None
        waited = time.perf_counter()
        try:
            await ack
        except Exception as error:
            self._fail("ack", error)
            raise Unavailable("the journal did not confirm the command in time") from None
        metrics.JOURNAL_ACK_SECONDS.observe(time.perf_counter() - waited)
        self.on_journaled(batch)
        self._since_snapshot += 1
        snapshotting = self._snapshot_task is not None and not self._snapshot_task.done()
        if self._since_snapshot >= self.snapshot_every and not snapshotting:
            self._snapshot_task = asyncio.get_running_loop().create_task(self._snapshot())
        return batch, watched

    def _fail(self, stage: str, error: BaseException) -> None:
        """Fence: no more commands until the state is rebuilt from the journal."""
        if self._fence is not None and not self._fence.done():
            return
        self.ready = False
        log.error("journal failed, fencing", stage=stage, error=repr(error))
        self._fence = asyncio.get_running_loop().create_task(self._rebuild())

    async def _rebuild(self) -> None:
        pending = self.journal.last_ack
        if pending is not None:  # settles by its acknowledgement or the journal's watchdog
            with contextlib.suppress(Exception):
                await pending
        while True:
            try:
                await self.recover()
                return
            except Exception as error:
                log.warning("recovery failed, retrying", error=repr(error))
                await asyncio.sleep(1.0)

    # ---- snapshots -----------------------------------------------------------------

    async def _snapshot(self) -> None:
        """Capture the state now; persist it once everything it holds is journaled."""
        try:
            state_engine, state_store = self.engine.capture(), self.store.snapshot()
            last = self.journal.last_ack
            stream_seq = self.journal.last_stream_seq
            if last is not None:
                stream_seq = await last
            await snapshots.save(self.bucket, snapshots.ServiceSnapshot(
                stream_seq=stream_seq, engine=state_engine, store=state_store))
            self._since_snapshot = 0
            metrics.SNAPSHOTS.inc()
            log.info("snapshot written", stream_seq=stream_seq, bytes=len(state_engine))
        except Exception as error:
            log.warning("snapshot failed", error=repr(error))
