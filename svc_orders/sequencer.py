"""The sequencer: svc_orders' one entry point for commands, where they meet the engine
and the journal.

`submit` owns all a command needs besides its translation from HTTP: readiness,
idempotency (a repeated client order id places nothing and answers the original
order; a repeated transfer id moves nothing and answers the original transfer, once
journaled), matching, journaling, and the order (or a transfer's balance) as it stands
right after the command, with the command's trades as views built once for the answer
and the market data alike.

A command is matched and its batch added to the journal's group in one step of the event
loop, so journal order is engine order; the commands of one step share a journal message
and its acknowledgement (group commit), and groups are pipelined. If an append fails or
times out (a refused group fails every command in it), the sequencer fences: it refuses
commands (503), lets the outstanding appends settle, and rebuilds engine and order store
from the newest service snapshot plus the journal -- exactly what a restart would do --
so memory never runs ahead of the journal for long.
A command answered 503 may still have been journaled (its acknowledgement was lost): the
rebuild finds it in the journal and hands it to the market data then, so that no trade
of the journal is missing from the trade feed.

Only the leader takes commands (`svc_orders.leadership`): `leading` says whether this
instance leads now, and a command sent to a standby is refused with `NotLeader`. A
standby keeps its state current with `replay`, the code recovery uses; `lead` starts
taking commands from the journal position the state holds, `step_down` fences and
rebuilds as a failed append does, without taking commands afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping

import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.object_store import ObjectStore

from common.instruments import Instrument
from common.messages import (
    Command,
    CommandRejected,
    EventBatch,
    ExpireOrders,
    PlaceOrder,
    RejectReason,
    TradeExecuted,
    TransferFunds,
)
from common.orderstate import OrderState
from common.tasks import stop_tasks
from common.views import TradeView, trade_view
from svc_orders import journaling, metrics, snapshots
from svc_orders.journaling import Journal, UnreadableJournal
from svc_orders.matching import Exchange
from svc_orders.store import OrderStore

log = structlog.get_logger(__name__)

MAX_IN_FLIGHT = 20_000  # appends awaiting their acknowledgement before 503s
RETRY_FIRST = 1.0  # seconds before a failed rebuild is tried again; doubles each time
RETRY_MAX = 30.0

FindOrder = Callable[[str], Awaitable[OrderState | None]]
Journaled = Callable[[EventBatch, list[TradeView]], None]


async def _nothing() -> None:
    return None


class Unavailable(Exception):
    """The command was not taken (or not confirmed): answer 503."""


class NotLeader(Unavailable):
    """This instance is a standby: the command goes to the leader (`leader`, its URL if
    known)."""

    def __init__(self, leader: str | None) -> None:
        super().__init__("this instance is a standby; send commands to the leader")
        self.leader = leader


class Outcome(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What one command came to."""

    batch: EventBatch | None  # None for a repeat: nothing was submitted
    order: OrderState | None  # the command's order (see `Sequencer.submit`)
    trades: list[TradeView] = []  # the trades the command made, in execution order
    refusal: CommandRejected | None = None  # set when the command changed nothing
    transfer: TransferFunds | None = None  # a transfer made (the original, for a repeat)
    balance: tuple[int, int] = (0, 0)  # then its user's (available, held) of its asset

    @property
    def repeat(self) -> bool:
        return self.batch is None


class Sequencer:
    def __init__(self, js: JetStreamContext, journal: Journal, bucket: ObjectStore,
                 instruments: Mapping[str, Instrument], *, snapshot_every: int,
                 funding: bool = False) -> None:
        self.js, self.bucket, self.instruments = js, bucket, instruments
        self.snapshot_every, self.funding = snapshot_every, funding
        self.engine = Exchange(instruments, funding)
        self.store = OrderStore()
        self.journal = journal
        self.ready = False  # the state is the journal's and the chain restarted
        self.position = 0  # the last stream sequence the state holds
        self.leading: Callable[[], bool] = lambda: True  # `svc_orders.leadership` decides
        self.leader_url: Callable[[], str | None] = lambda: None
        self.confirm_lead: Callable[[], Awaitable[None]] = _nothing  # before ready again
        self.find: FindOrder = self.remembered  # the service adds the order history
        self.on_journaled: Journaled = lambda batch, trades: None
        # Each batch a recovery applies: the leadership notes those with trades, which
        # a later takeover hands to the market data if no leader published them.
        self.on_replayed: Callable[[list[EventBatch]], None] = lambda batches: None
        self._since_snapshot = 0  # commands since the last snapshot stored
        self._stored_seq = 0  # the stored snapshot's journal position, as last seen
        self._standby_snapshots = False  # the last stored snapshot was another instance's
        # Per instrument, the seq of the last batch handed to `on_journaled` or found in
        # the journal by a recovery: a rebuild hands over the journaled batches past it.
        self._announced: dict[str, int] = {}
        self._fence: asyncio.Task[None] | None = None
        self._snapshot_task: asyncio.Task[None] | None = None  # kept: tasks need a reference

    # ---- recovery ------------------------------------------------------------------

    async def recover(self) -> None:
        """Newest service snapshot + the journal after it; then the chain restarts.

        A message it cannot replay stops it (UnreadableJournal, with the alarm gauge set
        to its stream sequence): the journal is the source of truth, and no state built
        around a skipped message is ever served.
        """
        started = time.perf_counter()
        snapshot = await snapshots.load(self.journal.nats, self.bucket)
        loaded = time.perf_counter()
        engine = (Exchange.restore(snapshot.engine, self.instruments, self.funding)
                  if snapshot else Exchange(self.instruments, self.funding))
        store = OrderStore.restore(snapshot.store) if snapshot else OrderStore()
        restored = time.perf_counter()
        end = await journaling.stream_last_seq(self.js)
        replayed = 0
        first = snapshot.stream_seq + 1 if snapshot else 1
        unannounced: list[EventBatch] = []  # journaled, yet never handed to the market data
        # At start-up the journal is history; a standby's market data is the leader's.
        rebuilding = self._fence is not None
        collecting = rebuilding and self.leading()
        async for batches in self.replay(engine, store, first, end):
            replayed += len(batches)
            self.on_replayed(batches)
            if collecting:
                unannounced.extend(batch for batch in batches
                                   if batch.seq > self._announced.get(batch.symbol, 0))
        metrics.JOURNAL_UNREADABLE.set(0)
        engine.check()
        if rebuilding:  # were we fenced by a new leader's takeover? Then we lead no more.
            await self.confirm_lead()
        self.engine, self.store, self.position = engine, store, end
        if not rebuilding or self.leading():
            self.announce(unannounced)
            self._announced = {symbol: engine.seq(symbol) for symbol in self.instruments}
        self.journal.restart_chain(end)
        self._since_snapshot = replayed
        self._stored_seq = snapshot.stream_seq if snapshot else 0
        self.ready = True
        metrics.RECOVERIES.inc()
        log.info("recovered", snapshot_seq=snapshot.stream_seq if snapshot else 0,
                 replayed=replayed, stream_seq=end, resting=len(engine.orders),
                 load_seconds=round(loaded - started, 3),
                 restore_seconds=round(restored - loaded, 3),
                 replay_seconds=round(time.perf_counter() - restored, 3),
                 seconds=round(time.perf_counter() - started, 3))

    async def replay(self, engine: Exchange, store: OrderStore, first: int, end: int,
                     ) -> AsyncIterator[list[EventBatch]]:
        """Apply the journal from stream sequence `first` to `end` to `engine` and
        `store`, yielding the batches applied from each message (a duplicate of a batch
        the state already holds is skipped): recovery and a standby's following."""
        try:
            async for stream_seq, batches in journaling.read(self.journal.nats, first, end):
                applied: list[EventBatch] = []
                try:
                    for batch in batches:
                        if batch.seq <= engine.seq(batch.symbol):
                            continue
                        engine.apply(batch)
                        store.apply(batch)
                        applied.append(batch)
                except (KeyError, ValueError, AssertionError) as error:
                    raise UnreadableJournal(stream_seq, repr(error)) from None
                yield applied
        except UnreadableJournal as error:
            metrics.JOURNAL_UNREADABLE.set(error.stream_seq)
            raise

    # ---- leadership ----------------------------------------------------------------

    def announce(self, batches: Iterable[EventBatch]) -> None:
        """Hand journaled batches to the market data (those the leader did not send)."""
        for batch in batches:
            self.on_journaled(batch, self._trade_views(batch))
            self._announced[batch.symbol] = max(batch.seq,
                                                self._announced.get(batch.symbol, 0))

    async def settled(self) -> None:
        """Return once no rebuild is running."""
        while self._fence is not None and not self._fence.done():
            await asyncio.wait((self._fence,))

    def lead(self) -> None:
        """Take commands: the state holds the journal up to `position`, which is its end
        (the leadership's takeover message included), so the chain starts there."""
        assert self._fence is None or self._fence.done(), "lead only a settled state"
        self.journal.restart_chain(self.position)
        self.ready = True

    def step_down(self) -> None:
        """Stop taking commands and rebuild from the journal: the engine may hold
        commands whose appends will now be refused."""
        if self._fence is None or self._fence.done():
            self._start_rebuild()

    # ---- commands ------------------------------------------------------------------

    def _require_ready(self) -> None:
        """Refuse work while the state may hold what the journal does not."""
        if not self.leading():
            raise NotLeader(self.leader_url())
        if not self.ready:
            raise Unavailable("the order service is recovering; retry shortly")

    async def submit(self, command: Command, named: OrderState | None = None,
                     key_id: str | None = None) -> Outcome:
        """Run `command` and return its outcome once JetStream acknowledged its batch.

        The outcome's order is the command's order as it stood right after the command:
        for a repeated placement, the original order; for a cancel or modify refused
        because the order is not live, the order as it stands (None if unknown). `named`
        is the command's order if the caller has looked it up already (a modify needs its
        instrument): a refusal answers with it rather than looking again. `key_id`, the
        API key that issued the command, is journaled with its batch.
        A transfer's outcome holds the transfer and its user's balance right after it;
        for a repeated transfer id, the original once journaled and the balance now.
        """
        self._require_ready()
        if type(command) is PlaceOrder and command.client_order_id is not None:
            earlier = self.store.by_key(command.user_id, command.client_order_id)
            original = None if earlier is None else await self.find(earlier)
            if original is not None:
                return Outcome(batch=None, order=original)
            self._require_ready()  # the lookup may have waited
        elif type(command) is TransferFunds and self._transferred(command) is not None:
            return await self._repeated_transfer(command)
        if self.journal.in_flight >= MAX_IN_FLIGHT:
            raise Unavailable("the journal is behind; retry shortly")
        started = time.perf_counter()
        batch = self.engine.submit(command)
        metrics.MATCH_SECONDS.observe(time.perf_counter() - started)
        if not batch.seq:  # nothing changed: nothing to journal
            return await self._unchanged(batch, named)
        if key_id is not None:
            batch = msgspec.structs.replace(batch, key_id=key_id)
        self.store.apply(batch)
        order = (None if isinstance(command, ExpireOrders | TransferFunds)
                 else self.store.get(command.order_id))
        if order is not None:  # a copy: later commands change the stored one in place
            order = msgspec.structs.replace(order)
        transferred = (self._transferred(command) if type(command) is TransferFunds
                       else None)
        ack = await self.journal.append(batch)  # joins this step's group: engine order
        try:
            await ack
        except Exception as error:
            self._fail("append", error)
            raise Unavailable("the journal did not confirm the command") from None
        trades = self._trade_views(batch)
        self.on_journaled(batch, trades)
        self._announced[batch.symbol] = batch.seq
        self._since_snapshot += 1
        if self._snapshot_due():
            self._snapshot_task = asyncio.get_running_loop().create_task(self._snapshot())
        if transferred is not None:
            return Outcome(batch=batch, order=None, transfer=transferred[0],
                           balance=transferred[1])
        return Outcome(batch=batch, order=order, trades=trades)

    def _transferred(self, command: TransferFunds,
                     ) -> tuple[TransferFunds, tuple[int, int]] | None:
        """The transfer of `command`'s id if the engine made it, with its user's balance
        of its asset now (None if it made none)."""
        funds = self.engine.funds
        done = None if funds is None else funds.transfers.get(command.transfer_id)
        if done is None:
            return None
        assert funds is not None
        return done, funds.balance_of(done.user_id, done.asset)

    async def _repeated_transfer(self, command: TransferFunds) -> Outcome:
        """A transfer id the engine has seen: the original once the journal holds it
        (it may still be in flight), read from the state then (a rebuild may have
        replaced the engine, and its state is the journal's)."""
        await self.acknowledged()
        transferred = self._transferred(command)
        if transferred is None:  # not in the rebuilt state: never guess an answer
            raise Unavailable("the transfer is not confirmed; retry it")
        return Outcome(batch=None, order=None, transfer=transferred[0],
                       balance=transferred[1])

    def _trade_views(self, batch: EventBatch) -> list[TradeView]:
        instrument = self.instruments[batch.symbol]
        return [trade_view(event, instrument) for event in batch.events
                if type(event) is TradeExecuted]

    async def _unchanged(self, batch: EventBatch, named: OrderState | None) -> Outcome:
        """A refused command (`CommandRejected`), or an expiry with nothing to expire."""
        if not batch.events:
            return Outcome(batch=batch, order=None)
        refusal = batch.events[0]
        assert isinstance(refusal, CommandRejected), "a batch without seq is a refusal"
        order = named
        if order is None and refusal.reason is RejectReason.ORDER_NOT_LIVE:
            order = await self.find(refusal.order_id)  # unknown, or no longer live?
        return Outcome(batch=batch, order=order, refusal=refusal)

    async def acknowledged(self) -> None:
        """Return once everything matched so far is acknowledged by the journal.

        Memory runs ahead of the journal by the appends in flight; a read that waits for
        them never shows a state that a restart would not reproduce. `Unavailable` if the
        journal fails them (the sequencer then fences and rebuilds).
        """
        self._require_ready()
        pending = self.journal.last_ack
        if pending is None:
            return
        if not pending.done():
            await asyncio.wait((pending,))  # never cancels the append's own future
        if pending.cancelled() or pending.exception() is not None:
            raise Unavailable("the journal did not confirm the latest commands")
        self._require_ready()

    async def remembered(self, order_id: str) -> OrderState | None:
        """A live or recent order as the journal holds it (None if not in memory)."""
        order = self.store.get(order_id)
        if order is None:
            return None
        order = msgspec.structs.replace(order)  # later commands change the stored one
        await self.acknowledged()
        return order

    def _fail(self, stage: str, error: BaseException) -> None:
        """Fence: no more commands until the state is rebuilt from the journal."""
        if self._fence is not None and not self._fence.done():
            return
        log.error("journal failed, fencing", stage=stage, error=repr(error))
        self._start_rebuild()

    def _start_rebuild(self) -> None:
        self.ready = False
        self._fence = asyncio.get_running_loop().create_task(self._rebuild())

    async def _rebuild(self) -> None:
        pending = self.journal.last_ack
        if pending is not None:  # settles by its acknowledgement or the journal's watchdog
            with contextlib.suppress(Exception):
                await pending
        await self.recover_retrying()

    async def recover_retrying(self) -> None:
        """`recover`, tried again after a failure (a server just starting, an unreadable
        message an operator will remove), each time after a longer pause."""
        delay = RETRY_FIRST
        while True:
            try:
                await self.recover()
                return
            except Exception as error:
                metrics.RECOVERY_FAILURES.inc()
                log.error("recovery failed, retrying", error=str(error) or repr(error),
                          retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, RETRY_MAX)

    async def stop(self) -> None:
        """At shutdown: a rebuild in progress ends with the service (it would otherwise
        go on retrying after the app is gone)."""
        if self._fence is not None:
            await stop_tasks([self._fence])

    # ---- snapshots -----------------------------------------------------------------

    def _snapshot_due(self) -> bool:
        writing = self._snapshot_task is not None and not self._snapshot_task.done()
        return self._since_snapshot >= self.snapshot_every and not writing

    async def _snapshot(self) -> None:
        """The leader's snapshot: none if a standby has stored one since the last look
        (`snapshot_followed`), else its own (`_write_own`).

        A standby's snapshots spare the leader the fork's pause. Once one was seen, the
        leader gives the next an extra half interval to arrive before it writes its own."""
        try:
            stored = await snapshots.stored_seq(self.bucket)
        except Exception as error:  # unknown: write one (it fails too if NATS is away)
            log.warning("no stored snapshot position", error=repr(error))
            stored = self._stored_seq
        if stored > self._stored_seq:
            self._stored_seq, self._standby_snapshots = stored, True
            self._since_snapshot = 0
        elif self._standby_snapshots:
            self._standby_snapshots = False
            self._since_snapshot = self.snapshot_every // 2
        else:
            await self._write_own()

    async def _write_own(self) -> None:
        """Capture the state now; persist it once everything it holds is journaled.

        The state must end with a whole journal message: recovery replays from the
        message after the snapshot's, so a command that joined that message's group
        after the capture would be lost. Hence the cut."""
        self.journal.cut()
        last, base = self.journal.last_ack, self.journal.last_stream_seq

        async def journaled() -> int:  # the stream sequence of the last batch captured
            return base if last is None else await last

        await self._write(self.engine, self.store, journaled())

    def followed(self, batches: int) -> None:
        """Count `batches` a standby applied from the journal toward its next snapshot."""
        self._since_snapshot += batches

    def snapshot_followed(self) -> None:
        """A standby's snapshot, when due: its state holds only journaled batches, so it
        is written at once; the leader, finding it stored, writes none (`_snapshot`)."""
        if self._snapshot_due():
            self._snapshot_task = asyncio.get_running_loop().create_task(
                self._write_followed())

    async def _write_followed(self) -> None:
        position = self.position  # read in the step that forks: what the child captures

        async def journaled() -> int:
            return position

        await self._write(self.engine, self.store, journaled())

    async def _write(self, engine: Exchange, store: OrderStore,
                     journaled: Awaitable[int]) -> None:
        try:
            stream_seq = await snapshots.save(
                self.bucket, lambda: (engine.capture(), store.state()), journaled)
            self._since_snapshot = 0
            self._stored_seq = max(self._stored_seq, stream_seq)
            metrics.SNAPSHOTS.inc()
            log.info("snapshot written", stream_seq=stream_seq)
        except Exception as error:
            log.warning("snapshot failed", error=repr(error))
