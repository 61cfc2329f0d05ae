"""The projection: every journaled batch folded into PostgreSQL, exactly once.

A durable pull consumer on `ex.events.>` hands over up to `batch` journal messages at a
time (`svc_trades.pull`, fetching ahead). Each fetch is folded with
`common.orderstate.apply` (the fold svc_orders uses; `svc_trades.changes`) and written in
ONE transaction: its trades and new orders, its changed orders, the one-minute candles of
its trades (`svc_trades.candles`), the instruments' sequences and the consumer's
position; only after the commit are the messages acknowledged. Folding the next fetch
overlaps with writing the previous one (two cores: Python and PostgreSQL).

Exactly once rests on three things:

- each instrument's sequence (gap-free from 1) is stored with the rows: a batch at or
  below it is a duplicate (a redelivery, or a command journaled twice) and is skipped;
- the consumer's stream position is compared-and-set by every transaction, so a
  projector that lost its advisory lock can never commit over the one that holds it;
- rows are idempotent anyway: trades keyed by their stable id, orders only move forward.

PostgreSQL is the only record of progress: each session loads the live orders, then
recreates the consumer right after the position PostgreSQL holds, so messages fetched but
not committed before a crash come again at once (and a commit PostgreSQL lost in a crash
of its own is simply redone). Any failure ends the session; a new one starts after a
pause. A message that cannot be projected (undecodable, unknown event type or instrument)
is parked in `parked_messages` in the same transaction, counted, logged and terminated:
it never blocks the journal.

Nor does a message that decodes but cannot be stored (a quantity past PostgreSQL's
bigint, a text too long for its index, a value a constraint refuses) or folded: its
whole fetch would fail on every attempt. A fetch refused for its values (`Unprojectable`;
never for a failed connection) is projected again one message per transaction
(`_isolate`), and the message that fails alone is parked (`trades_projection_refused_\
messages_total`, an error logged), its batches passed over; the others are projected as
usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping

import asyncpg
import structlog
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from common import subjects
from common.instruments import Instrument
from common.journal import ensure_stream
from common.orderstate import OrderState
from common.tasks import supervise
from svc_trades import candles, ledger, metrics, repository
from svc_trades.changes import Changes, Fold, Gap, SequenceGap, passed_over
from svc_trades.pull import Puller
from svc_trades.rows import storable

log = structlog.get_logger(__name__)

DURABLE = "svc_trades_projection"
IDLE_FETCH = 1.0  # seconds without messages before checking NATS and PostgreSQL
ACK_WAIT = 60.0  # seconds before JetStream redelivers an unacknowledged message
PAUSES = (0.5, 10.0)  # first and longest pause before a failed session restarts
FOLD_SLICE = 50  # messages folded between two turns of the event loop


class PositionMoved(Exception):
    """Another projector advanced the consumer: this one must stop and start over."""


# What a write raises for the values it was given, never for a failed connection:
# PostgreSQL's data exceptions (class 22) and constraint violations (23), a value past an
# index's limit (54), and asyncpg's own refusal to encode an int past int64 for COPY.
REFUSALS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError,
            asyncpg.ProgramLimitExceededError, OverflowError)
MAX_REASON = 500  # characters of an error kept as a parked message's reason


class Unprojectable(Exception):
    """A fetch that cannot be projected for what it holds: its rows were refused
    (`REFUSALS`), or its fold failed. It ends the round; the next projects the messages
    up to `last` (stream sequence) one at a time, to find and park the culprit."""

    def __init__(self, last: int, reason: str) -> None:
        super().__init__(f"fetch up to stream sequence {last}: {reason}")
        self.last, self.reason = last, reason


# What the fold hands the writer: a fetch's changes, None when the journal is quiet, or
# the fetch it could not fold (raised by the writer once the fetches before are written).
Ready = asyncio.Queue[Changes | Unprojectable | None]


def _reason(kind: str, error: BaseException) -> str:
    return storable(f"{kind}: {type(error).__name__}: {error}")[:MAX_REASON]


def _cancelled() -> None:
    """Raise if this task was asked to stop: a library call may have swallowed it
    (asyncio.wait_for in 3.11 returns a result that arrived at the same moment)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Projector:
    def __init__(self, pool: asyncpg.Pool, nc: Nats, instruments: Mapping[str, Instrument],
                 *, batch: int, durable: str = DURABLE) -> None:
        self.pool, self.nc, self.instruments = pool, nc, instruments
        self.js = nc.jetstream()
        self.batch, self.durable = batch, durable
        self.running = False  # leading, subscribed, and the last round trip worked
        self.position = 0  # stream sequence committed
        self.gaps: set[Gap] = set()  # that ended a session: seen again, they are the journal's
        # The end of a fetch that could not be projected: up to it, one message at a time.
        self.suspect: int | None = None

    async def run(self) -> None:
        """Project until cancelled; a failed session restarts after a growing pause, in a
        task of its own (a failed task group leaves its task cancelled on 3.11)."""
        await supervise("projector", self._session, pauses=PAUSES)

    async def _session(self) -> None:
        async with self.pool.acquire() as conn:
            await self._lead(conn)
            # Safe without waiting for the WAL flush: a commit lost in a PostgreSQL crash
            # rolls the position back with it, and the journal still holds those messages.
            await conn.execute("SET synchronous_commit = off")
            while True:
                await self._round(conn)

    async def _round(self, conn: asyncpg.Connection) -> None:
        """Project from the position PostgreSQL holds until a fetch cannot be projected,
        or (isolating one) until a message is parked: the fold state then holds what
        PostgreSQL does not, and the next round loads it again."""
        self.position = await repository.consumer_position(conn, self.durable)
        seqs = await repository.projection_position(conn)
        live = await repository.live_orders(conn, self.instruments)
        puller = await self._subscribe()
        _cancelled()
        log.info("projecting", durable=self.durable, stream_seq=self.position,
                 live_orders=len(live), isolating_to=self.suspect)
        try:
            if self.suspect is not None and await self._isolate(conn, puller, seqs, live):
                return
            # In a task of its own: a failed task group leaves its task cancelled on 3.11.
            pipeline = asyncio.get_running_loop().create_task(
                self._pipeline(conn, puller, seqs, live), name="projection pipeline")
            try:
                await pipeline
            except* Unprojectable:
                pass  # noted by the writer (`suspect`): the next round isolates the culprit
        finally:
            self.running = False
            await puller.close()

    async def _pipeline(self, conn: asyncpg.Connection, puller: Puller, seqs: dict[str, int],
                        live: dict[str, OrderState]) -> None:
        _cancelled()  # before the task group, which would wait for its tasks forever
        ready: Ready = asyncio.Queue(maxsize=1)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._fold(puller, seqs, live, ready))
            tasks.create_task(self._write(conn, ready))

    async def _isolate(self, conn: asyncpg.Connection, puller: Puller, seqs: dict[str, int],
                       live: dict[str, OrderState]) -> bool:
        """Project up to `suspect` one message per transaction, parking the one that
        cannot be: True once one is parked (the round ends), False past `suspect`."""
        assert self.suspect is not None
        while self.position < self.suspect:
            _cancelled()
            messages = await puller.next(IDLE_FETCH)
            if not messages:  # nothing there any more (the journal was recreated)
                break
            self.running = True
            for msg in messages:
                before = dict(seqs)
                fold = Fold(self.position, seqs, live, self.instruments, self.gaps)
                try:
                    fold.feed([msg])
                    changes = fold.changes()
                except SequenceGap as missed:
                    self._missed(missed)
                    raise
                except Exception as error:
                    await self._park(conn, msg, before, _reason("unfoldable", error))
                    return True
                try:
                    await self._commit(conn, changes)
                except Unprojectable as refused:
                    await self._park(conn, msg, before, refused.reason)
                    return True
        log.info("fetch projected one message at a time", up_to=self.suspect,
                 stream_seq=self.position)
        self.suspect = None
        return False

    async def _park(self, conn: asyncpg.Connection, msg: Msg, seqs: dict[str, int],
                    reason: str) -> None:
        """Park a decodable message that cannot be projected, and pass over its batches."""
        stream_seq = msg.metadata.sequence.stream
        async with conn.transaction():
            if not await repository.advance(conn, self.durable, self.position, stream_seq):
                raise PositionMoved(f"consumer {self.durable} moved past {self.position}")
            await repository.set_symbol_positions(conn, passed_over(msg.data, seqs))
            await repository.park(conn, [(stream_seq, msg.subject, reason, msg.data)])
        self.position = stream_seq
        await msg.term()
        metrics.MESSAGES.labels("parked").inc()
        metrics.REFUSED.inc()
        log.error("journal message parked", stream_seq=stream_seq, subject=msg.subject,
                  reason=reason)

    def _missed(self, missed: SequenceGap) -> None:
        """A batch missing from the delivery: the session ends, the next reads on from
        PostgreSQL's position (seen again, the gap is the journal's own)."""
        self.gaps.add(missed.gap)
        log.warning("batch missing from the delivery: reading on from the "
                    "projection's position", symbol=missed.gap.symbol,
                    after=missed.gap.last, seq=missed.gap.seq)

    async def _lead(self, conn: asyncpg.Connection) -> None:
        """Wait for the session-level lock: one projector per database and consumer.

        It is released when the connection goes back to the pool (asyncpg resets it)
        or dies, so a standby takes over from a crashed leader.
        """
        while True:
            if await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))",
                                   self.durable):
                return
            await asyncio.sleep(IDLE_FETCH)

    async def _subscribe(self) -> Puller:
        """(Re)create the durable consumer right after the position PostgreSQL holds."""
        try:
            stream = await self.js.stream_info(subjects.STREAM)
        except NotFoundError:  # before svc_orders ever ran: create the journal it will use
            await ensure_stream(self.js)
            stream = await self.js.stream_info(subjects.STREAM)
        start = self.position + 1
        if self.position > stream.state.last_seq:
            log.warning("journal is shorter than the projection (recreated?): reading it all",
                        stream_seq=self.position, stream_last=stream.state.last_seq)
            start = 1
        with contextlib.suppress(NotFoundError):
            await self.js.delete_consumer(subjects.STREAM, self.durable)
        # Acknowledging a batch's last message acknowledges the batch (AckPolicy.ALL);
        # room for what is being written, folded, and fetched ahead.
        await self.js.add_consumer(subjects.STREAM, ConsumerConfig(
            durable_name=self.durable, filter_subject=subjects.EVENTS_WILDCARD,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
            ack_policy=AckPolicy.ALL, ack_wait=ACK_WAIT, max_ack_pending=8 * self.batch))
        puller = Puller(self.nc, subjects.STREAM, self.durable, self.batch)
        await puller.start()
        return puller

    async def _fold(self, puller: Puller, seqs: dict[str, int], live: dict[str, OrderState],
                    ready: Ready) -> None:
        """Fetch and fold ahead of the writer; None tells it the journal is quiet."""
        position = self.position
        while True:
            _cancelled()
            messages = await puller.next(IDLE_FETCH)
            if not messages:
                await ready.put(None)
                continue
            fold = Fold(position, seqs, live, self.instruments, self.gaps)
            try:
                for start in range(0, len(messages), FOLD_SLICE):
                    fold.feed(messages[start:start + FOLD_SLICE])
                    await asyncio.sleep(0)  # let the writer answer PostgreSQL meanwhile
                changes = fold.changes()
            except SequenceGap as missed:  # the session ends: the next reads on from PG
                self._missed(missed)
                raise
            except Exception as error:  # the fold is pure: the messages are the cause
                await ready.put(Unprojectable(messages[-1].metadata.sequence.stream,
                                              _reason("unfoldable", error)))
                return
            position = changes.position
            await ready.put(changes)

    async def _write(self, conn: asyncpg.Connection, ready: Ready) -> None:
        while True:
            _cancelled()
            self.running = True
            changes = await ready.get()
            if changes is None:
                info = await self.js.consumer_info(subjects.STREAM, self.durable)
                await conn.execute("SELECT 1")  # PostgreSQL is still there too
                metrics.LAG.set(info.num_pending or 0)
            elif isinstance(changes, Unprojectable):
                self._suspect(changes)
                raise changes
            else:
                try:
                    await self._commit(conn, changes)
                except Unprojectable as refused:
                    self._suspect(refused)
                    raise

    def _suspect(self, unprojectable: Unprojectable) -> None:
        """A fetch that cannot be projected: the round ends, and the next projects it one
        message at a time to find and park the culprit."""
        self.suspect = unprojectable.last
        log.warning("fetch cannot be projected: projecting it one message at a time",
                    stream_seq=self.position, up_to=unprojectable.last,
                    reason=unprojectable.reason)

    async def _commit(self, conn: asyncpg.Connection, changes: Changes) -> None:
        """One fetch, one transaction, then the acknowledgements."""
        started = time.perf_counter()
        try:
            try:
                await self._transaction(conn, changes, careful=False)
            except asyncpg.UniqueViolationError:
                log.warning("some rows exist already (a reused order id?): writing "
                            "carefully", stream_seq=changes.position)
                await self._transaction(conn, changes, careful=True)
        except REFUSALS as error:
            raise Unprojectable(changes.position, _reason("unstorable", error)) from error
        self.position = changes.position
        messages = changes.messages
        for index in sorted(changes.poison):
            await messages[index].term()
        if len(messages) - 1 not in changes.poison:
            await messages[-1].ack()
        metrics.LAG.set(messages[-1].metadata.num_pending)
        parked = len(changes.poison)
        metrics.MESSAGES.labels("projected").inc(len(messages) - changes.duplicates - parked)
        metrics.MESSAGES.labels("duplicate").inc(changes.duplicates)
        metrics.MESSAGES.labels("parked").inc(parked)
        metrics.GAPS.inc(changes.gaps)
        metrics.TRADES.inc(len(changes.trades))
        metrics.BATCH_MESSAGES.observe(len(messages))
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)

    async def _transaction(self, conn: asyncpg.Connection, changes: Changes,
                           careful: bool) -> None:
        async with conn.transaction():
            if not await repository.advance(conn, self.durable, self.position,
                                            changes.position):
                raise PositionMoved(f"consumer {self.durable} moved past {self.position}")
            await repository.insert(conn, changes.new_orders, changes.trades, careful)
            await candles.record(conn, changes.trades)  # candles roll up with their trades
            await repository.update_orders(conn, changes.updated_orders)
            await ledger.write(conn, changes.postings)
            await repository.set_symbol_positions(conn, changes.seqs)
            await repository.park(conn, changes.parked)
