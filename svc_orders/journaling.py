"""Journaling: svc_orders appends each state-changing command's `EventBatch` to the
journal (the JetStream stream defined in `common.journal`) and reads it back to recover.

Appends are pipelined (many acknowledgements outstanding) yet ordered: a batch is
buffered on the connection in the same event-loop step in which the engine produced it,
and each one names the stream sequence it must follow (`Nats-Expected-Last-Sequence`:
the stream's last sequence at the chain's restart, plus one per batch sent since, as
only this writer appends). JetStream therefore refuses a batch whose predecessor was
lost, or that follows anyone else's message (a new leader's takeover), so the journal is
always a gap-free prefix of what the engine did, and `Nats-Msg-Id` makes a retried
append harmless. (Not `Nats-Expected-Last-Msg-Id`: on a replicated stream, nats-server
2.15 checks it when each replica stores the message, and a refusal there stalls the
stream.)

Acknowledgements arrive in order on one inbox subscription and are decoded by msgspec;
one watchdog, not a timer per command, fails every outstanding append once the oldest
has waited longer than the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator

import msgspec
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from common import subjects
from common.messages import EventBatch, batch_decoder, encoder
from common.tasks import stop_tasks
from svc_orders import metrics, streamrange

REPLAY_BUFFER = 10_000  # journal messages read ahead of the replay
WATCH_INTERVAL = 0.05  # seconds between checks of the oldest outstanding append


class JournalError(Exception):
    """JetStream refused an append, or did not acknowledge it in time."""


class UnreadableJournal(Exception):
    """A journal message recovery cannot replay: not an `EventBatch`, or a batch that
    does not follow the state before it. Recovery stops there (README, Durability)."""

    def __init__(self, stream_seq: int, reason: str) -> None:
        super().__init__(f"journal message {stream_seq} cannot be replayed: {reason}")
        self.stream_seq, self.reason = stream_seq, reason


class _AckError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _Ack(msgspec.Struct):
    """JetStream's reply to a publish: a stream sequence, or an error."""

    seq: int = 0
    duplicate: bool = False
    error: _AckError | None = None


_ack_decoder = msgspec.json.Decoder(_Ack)


class Journal:
    def __init__(self, nats: Nats, timeout: float) -> None:
        self.nats, self.timeout = nats, timeout
        self.last_stream_seq = 0  # the stream's last sequence when the chain restarted
        self.last_ack: asyncio.Future[int] | None = None
        self._expected = 0  # the stream sequence the next append must follow
        self._inbox = ""
        self._next_token = 0
        self._waiting: dict[str, asyncio.Future[int]] = {}
        self._order: deque[tuple[float, asyncio.Future[int]]] = deque()
        self._subscription: Subscription | None = None
        self._watchdog: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        return len(self._waiting)

    async def start(self) -> None:
        """Subscribe to the acknowledgement inbox, start the watchdog, and report the
        appends in flight as a gauge (read when scraped: nothing on the hot path)."""
        metrics.JOURNAL_IN_FLIGHT.set_function(lambda: self.in_flight)
        self._inbox = self.nats.new_inbox() + "."
        self._subscription = await self.nats.subscribe(self._inbox + "*", cb=self._on_ack)
        self._watchdog = asyncio.create_task(self._watch())

    async def close(self) -> None:
        if self._watchdog is not None:
            await stop_tasks([self._watchdog])
        if self._subscription is not None:
            await self._subscription.unsubscribe()

    def restart_chain(self, last_stream_seq: int) -> None:
        """After a recovery: the next append must follow stream sequence `last_stream_seq`."""
        self.last_stream_seq = self._expected = last_stream_seq
        self.last_ack = None

    async def append(self, batch: EventBatch) -> asyncio.Future[int]:
        """Buffer `batch` for JetStream; the future gives its stream sequence.

        Does not suspend before the message is buffered: nats-py appends to its pending
        buffer synchronously (it only waits when its reconnect buffer is full, which
        raises instead).
        """
        msg_id = subjects.batch_id(batch.symbol, batch.seq)
        headers = {"Nats-Msg-Id": msg_id, "Nats-Expected-Last-Sequence": str(self._expected)}
        self._expected += 1
        self._next_token += 1
        token = str(self._next_token)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        self._order.append((time.monotonic() + self.timeout, future))
        self.last_ack = future
        await self.nats.publish(subjects.events(batch.symbol), encoder.encode(batch),
                                reply=self._inbox + token, headers=headers)
        return future

    async def _on_ack(self, msg: Msg) -> None:
        future = self._waiting.pop(msg.subject[len(self._inbox):], None)
        if future is None or future.done():
            return
        if not msg.data:  # a status message, e.g. 503 "no responders": no stream there
            status = msg.headers.get("Status", "?") if msg.headers else "?"
            future.set_exception(JournalError(f"no JetStream answer (status {status})"))
            return
        try:
            ack = _ack_decoder.decode(msg.data)
        except msgspec.DecodeError as error:
            future.set_exception(JournalError(f"unreadable acknowledgement: {error}"))
            return
        if ack.error is not None:
            future.set_exception(JournalError(
                f"JetStream refused the batch: {ack.error.description} "
                f"({ack.error.err_code})"))
        elif ack.duplicate:  # the id of a batch someone else appended: a deposed leader
            future.set_exception(JournalError("JetStream holds a batch of this id already"))
        else:
            future.set_result(ack.seq)

    async def _watch(self) -> None:
        """Fail every outstanding append once the oldest is overdue (acks come in order)."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            order = self._order
            while order and order[0][1].done():
                order.popleft()
            if order and order[0][0] < time.monotonic():
                overdue = JournalError(f"no acknowledgement within {self.timeout} s")
                for _, future in order:
                    if not future.done():
                        future.set_exception(overdue)
                order.clear()
                self._waiting.clear()


async def stream_last_seq(js: JetStreamContext) -> int:
    info = await js.stream_info(subjects.STREAM)
    return int(info.state.last_seq)


async def read(nats: Nats, start: int, end: int, buffer: int = REPLAY_BUFFER,
               ) -> AsyncIterator[tuple[int, EventBatch]]:
    """Yield (stream sequence, batch) for every journaled batch from `start` to `end`.

    One push consumer streams the range (`streamrange`), with none of a pull `fetch`'s
    per-message task and timer; at most `buffer` messages wait here. Messages removed
    from the stream (e.g. an unreadable one, by an operator) are never delivered, so the
    range ends at the last message still there. A message that is not an `EventBatch`
    raises `UnreadableJournal`.
    """
    try:
        last = await nats.jetstream().get_last_msg(subjects.STREAM, subjects.EVENTS_WILDCARD)
    except NotFoundError:  # no message at all
        return
    end = min(end, last.seq or 0)
    if start > end:
        return
    async with contextlib.aclosing(streamrange.messages(
            nats, subjects.STREAM, subjects.EVENTS_WILDCARD, start, buffer)) as messages:
        async for delivered, data in messages:
            seq = delivered.stream_seq
            if seq > end:  # appended after the range was fixed: not this replay's
                return
            try:
                batch = batch_decoder.decode(data)
            except msgspec.DecodeError as error:  # the reason names no part of the payload
                raise UnreadableJournal(seq, str(error)) from None
            yield seq, batch
            if seq == end:
                return
