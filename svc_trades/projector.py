"""The projection: every journaled batch folded into PostgreSQL, exactly once.

A durable pull consumer on `ex.events.>` hands over up to `batch` journal messages at a
time. Each fetch is applied in ONE transaction: load the orders it changes (one SELECT),
fold its events with `common.orderstate.apply` (the fold svc_orders uses), write its
trades and orders, and advance the positions; only after the commit are the messages
acknowledged. Exactly once rests on three things:

- each instrument's sequence (gap-free from 1) is stored with the rows: a batch at or
  below it is a duplicate (a redelivery, or a command journaled twice) and is skipped;
- the consumer's stream position is compared-and-set by every transaction, so a
  projector that lost its advisory lock can never commit over the one that holds it;
- rows are idempotent anyway: trades keyed by their stable id, orders only move forward.

PostgreSQL is the only record of progress: each session recreates the consumer at the
position PostgreSQL holds, so messages fetched but not committed before a crash come
again at once instead of after an ack timeout. A message that cannot be projected
(undecodable, unknown event type or instrument) is parked in `parked_messages` in the
same transaction, counted, logged and terminated: it never blocks the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping

import asyncpg
import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from common import subjects
from common.history import load_states, projection_position
from common.instruments import Instrument
from common.journal import ensure_stream
from common.messages import (
    EventBatch,
    OrderAccepted,
    OrderRejected,
    TradeExecuted,
    batch_decoder,
)
from common.orderstate import OrderState, apply, order_ids
from svc_trades import metrics, repository

log = structlog.get_logger(__name__)

DURABLE = "svc_trades_projection"
IDLE_FETCH = 1.0  # seconds a fetch waits for new messages
ACK_WAIT = 60.0  # seconds before JetStream redelivers an unacknowledged message
PAUSES = (0.5, 10.0)  # first and longest pause before a failed session restarts

CREATING = (OrderAccepted, OrderRejected)
Parked = tuple[int, str, str, bytes]  # stream_seq, subject, reason, data


class PositionMoved(Exception):
    """Another projector advanced the consumer: this one must stop and start over."""


def needed_orders(batches: list[EventBatch]) -> set[str]:
    """Orders the batches change before creating them: those must be loaded first."""
    created: set[str] = set()
    needed: set[str] = set()
    for batch in batches:
        for event in batch.events:
            if isinstance(event, CREATING):
                created.add(event.order.order_id)
            else:
                needed.update(i for i in order_ids(event) if i not in created)
    return needed


def fold(batches: list[EventBatch], states: dict[str, OrderState],
         ) -> tuple[list[TradeExecuted], list[str]]:
    """Apply the batches to `states`; return their trades and the orders they changed.

    Changed orders come in the order they were first touched, so new orders are inserted
    in journal order (their listing order). An event naming an order the projection never
    saw (only if the journal lost its beginning) is counted and not folded.
    """
    trades: list[TradeExecuted] = []
    touched: dict[str, None] = {}
    for batch in batches:
        for event in batch.events:
            ids = order_ids(event)
            if type(event) is TradeExecuted:
                trades.append(event)
            if not isinstance(event, CREATING) and not all(i in states for i in ids):
                metrics.ORPHANS.inc()
                log.warning("event for an unknown order not folded", symbol=batch.symbol,
                            seq=batch.seq, orders=ids)
                continue
            apply(states, event)
            touched.update(dict.fromkeys(ids))
    return trades, list(touched)


class Projector:
    def __init__(self, pool: asyncpg.Pool, js: JetStreamContext,
                 instruments: Mapping[str, Instrument], *, batch: int,
                 durable: str = DURABLE) -> None:
        self.pool, self.js, self.instruments = pool, js, instruments
        self.batch, self.durable = batch, durable
        self.running = False  # leading, subscribed, and the last round trip worked
        self.position = 0  # stream sequence committed
        self.seqs: dict[str, int] = {}  # instrument sequence committed
        self._pause = PAUSES[0]

    async def run(self) -> None:
        """Project until cancelled; a failed session restarts after a growing pause."""
        while True:
            try:
                await self._session()
            except Exception:
                self.running = False
                metrics.FAILURES.inc()
                log.exception("projection session failed, restarting", pause=self._pause)
                await asyncio.sleep(self._pause)
                self._pause = min(self._pause * 2, PAUSES[1])

    async def _session(self) -> None:
        async with self.pool.acquire() as conn:
            await self._lead(conn)
            self.position = await repository.consumer_position(conn, self.durable)
            self.seqs = await projection_position(conn)
            subscription = await self._subscribe()
            log.info("projecting", durable=self.durable, stream_seq=self.position)
            try:
                task = asyncio.current_task()
                while True:
                    # nats-py's fetch can swallow a cancellation (asyncio.wait_for in 3.11
                    # returns a message that arrived at the same moment): honour it here.
                    if task is not None and task.cancelling():
                        raise asyncio.CancelledError
                    self.running = True
                    try:
                        messages = await subscription.fetch(self.batch, timeout=IDLE_FETCH)
                    except TimeoutError:
                        info = await subscription.consumer_info()  # NATS is still there
                        await conn.execute("SELECT 1")  # and so is PostgreSQL
                        metrics.LAG.set(info.num_pending or 0)
                    else:
                        await self._project(conn, messages)
                    self._pause = PAUSES[0]
            finally:
                self.running = False
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()

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

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
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
        await self.js.add_consumer(subjects.STREAM, ConsumerConfig(
            durable_name=self.durable, filter_subject=subjects.EVENTS_WILDCARD,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
            ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT,
            max_ack_pending=max(2 * self.batch, 1000)))
        return await self.js.pull_subscribe_bind(durable=self.durable,
                                                 stream=subjects.STREAM)

    def _decode(self, msg: Msg, stream_seq: int, parked: list[Parked]) -> EventBatch | None:
        try:
            batch = batch_decoder.decode(msg.data)
        except msgspec.DecodeError as error:  # ValidationError too: unknown event types
            reason = f"undecodable: {error}"
        else:
            if batch.symbol in self.instruments:
                return batch
            reason = f"unknown instrument {batch.symbol!r}"
        parked.append((stream_seq, msg.subject, reason, msg.data))
        log.error("journal message parked", stream_seq=stream_seq, subject=msg.subject,
                  reason=reason)
        return None

    async def _project(self, conn: asyncpg.Connection, messages: list[Msg]) -> None:
        """One fetch, one transaction, then the acknowledgements."""
        started = time.perf_counter()
        seqs = dict(self.seqs)
        batches: list[EventBatch] = []
        parked: list[Parked] = []
        poison: set[int] = set()
        position = self.position
        for index, msg in enumerate(messages):
            stream_seq = msg.metadata.sequence.stream
            position = max(position, stream_seq)
            batch = self._decode(msg, stream_seq, parked)
            if batch is None:
                poison.add(index)
                continue
            last = seqs.get(batch.symbol, 0)
            if batch.seq <= last:
                continue
            if batch.seq != last + 1:
                metrics.GAPS.inc()
                log.warning("journal sequence gap", symbol=batch.symbol, after=last,
                            seq=batch.seq)
            seqs[batch.symbol] = batch.seq
            batches.append(batch)
        async with conn.transaction():
            if not await repository.advance(conn, self.durable, self.position, position):
                raise PositionMoved(f"consumer {self.durable} moved past {self.position}")
            states = await load_states(conn, needed_orders(batches), self.instruments)
            trades, changed = fold(batches, states)
            await repository.insert_trades(conn, trades, self.instruments)
            await repository.upsert_orders(conn, [states[i] for i in changed],
                                           self.instruments)
            await repository.set_symbol_positions(
                conn, {symbol: seq for symbol, seq in seqs.items()
                       if seq != self.seqs.get(symbol)})
            await repository.park(conn, parked)
        self.position, self.seqs = position, seqs
        for index, msg in enumerate(messages):
            await (msg.term() if index in poison else msg.ack())
        metrics.LAG.set(messages[-1].metadata.num_pending)
        metrics.MESSAGES.labels("projected").inc(len(batches))
        metrics.MESSAGES.labels("duplicate").inc(len(messages) - len(batches) - len(poison))
        metrics.MESSAGES.labels("parked").inc(len(poison))
        metrics.TRADES.inc(len(trades))
        metrics.BATCH_MESSAGES.observe(len(messages))
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
