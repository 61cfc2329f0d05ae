"""Journaling: svc_orders appends each state-changing command's `EventBatch` to the
journal (the JetStream stream defined in `common.journal`) and reads it back to recover.

Group commit: the batches appended in one step of the event loop share one journal
message per instrument and one acknowledgement. A batch joins its group in the same step
in which the engine produced it, and the group is published by a task that runs at the
start of the next step, so journal order is engine order. Groups are pipelined (many
acknowledgements outstanding) yet ordered: each names the stream sequence it must follow
(`Nats-Expected-Last-Sequence`: the stream's last sequence at the chain's restart, plus
one per message sent since, as only this writer appends). JetStream therefore refuses a
group whose predecessor was lost, or that follows anyone else's message (a new leader's
takeover), so the journal is always a gap-free prefix of what the engine did;
`Nats-Msg-Id` (the group's first and last batch) makes a retried append harmless. A
refused group fails every command in it. (Not `Nats-Expected-Last-Msg-Id`: on a
replicated stream, nats-server 2.15 checks it when each replica stores the message, and
a refusal there stalls the stream.)

Acknowledgements arrive in order on one inbox subscription and are decoded by msgspec;
one watchdog, not a timer per group, fails every outstanding append once the oldest has
waited longer than the timeout.
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
from common.journal import batches_of, group_id
from common.messages import EventBatch, encoder
from common.tasks import stop_tasks
from svc_orders import metrics, streamrange

REPLAY_BUFFER = 10_000  # journal messages read ahead of the replay
WATCH_INTERVAL = 0.05  # seconds between checks of the oldest outstanding append
GROUP_LIMIT = 256  # batches in one journal message (JetStream limits a message's size)


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


class _Group:
    """Consecutive batches of one instrument, journaled as one message, and the futures
    of their commands."""

    __slots__ = ("batches", "futures", "sent", "token")

    def __init__(self) -> None:
        self.batches: list[EventBatch] = []
        self.futures: list[asyncio.Future[int]] = []
        self.token = ""  # names the acknowledgement once published
        self.sent = 0.0  # when it was published (time.perf_counter)

    def halves(self) -> tuple[_Group, _Group]:
        first, second = _Group(), _Group()
        middle = len(self.batches) // 2
        first.batches, second.batches = self.batches[:middle], self.batches[middle:]
        first.futures, second.futures = self.futures[:middle], self.futures[middle:]
        return first, second


class Journal:
    def __init__(self, nats: Nats, timeout: float) -> None:
        self.nats, self.timeout = nats, timeout
        self.last_stream_seq = 0  # the stream's last sequence when the chain restarted
        self.last_ack: asyncio.Future[int] | None = None
        self.in_flight = 0  # commands appended, neither acknowledged nor failed yet
        self._expected = 0  # the stream sequence the next message must follow
        self._inbox = ""
        self._next_token = 0
        self._forming: dict[str, _Group] = {}  # groups still taking batches, by instrument
        self._full: list[_Group] = []  # groups that took their last batch, not yet sent
        self._publisher: asyncio.Task[None] | None = None
        self._waiting: dict[str, _Group] = {}  # by token
        self._order: deque[tuple[float, str]] = deque()  # (deadline, token), sent first first
        self._subscription: Subscription | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe to the acknowledgement inbox, start the watchdog, and report the
        appends in flight as a gauge (read when scraped: nothing on the hot path)."""
        metrics.JOURNAL_IN_FLIGHT.set_function(lambda: self.in_flight)
        self._inbox = self.nats.new_inbox() + "."
        self._subscription = await self.nats.subscribe(self._inbox + "*", cb=self._on_ack)
        self._watchdog = asyncio.create_task(self._watch())

    async def close(self) -> None:
        tasks = [task for task in (self._publisher, self._watchdog) if task is not None]
        await stop_tasks(tasks)
        if self._subscription is not None:
            await self._subscription.unsubscribe()

    def restart_chain(self, last_stream_seq: int) -> None:
        """After a recovery: the next append must follow stream sequence `last_stream_seq`."""
        self.last_stream_seq = self._expected = last_stream_seq
        self.last_ack = None

    async def append(self, batch: EventBatch) -> asyncio.Future[int]:
        """Add `batch` to its instrument's group of this step; the future gives the stream
        sequence of the group's message once JetStream acknowledged it.

        Never suspends, so the caller's next batch follows this one in the journal.
        """
        loop = asyncio.get_running_loop()
        group = self._forming.get(batch.symbol)
        if group is None or len(group.batches) >= GROUP_LIMIT:
            if group is not None:
                self._full.append(group)
            group = self._forming[batch.symbol] = _Group()
            if self._publisher is None:  # runs once the callbacks ready now have run
                self._publisher = loop.create_task(self._publish())
        future: asyncio.Future[int] = loop.create_future()
        group.batches.append(batch)
        group.futures.append(future)
        self.in_flight += 1
        self.last_ack = future
        return future

    def cut(self) -> None:
        """End the groups forming now: a batch appended later goes in a later message.
        A state captured right after holds every batch of the messages up to the one
        `last_ack` names, and no part of a later one."""
        self._full.extend(self._forming.values())
        self._forming = {}

    async def _publish(self) -> None:
        """Send every group formed so far, in order; one task at a time, so that groups
        formed while a send waits (nats-py's buffer full) are sent after it."""
        try:
            while self._full or self._forming:
                groups, self._full = self._full, []
                groups.extend(self._forming.values())
                self._forming = {}
                messages = [message for group in groups for message in self._fitting(group)]
                for number, (group, payload) in enumerate(messages):
                    try:
                        await self._send(group, payload)
                    except Exception as error:  # e.g. disconnected with a full buffer
                        failed = JournalError(f"the append failed: {error!r}")
                        for unsent, _ in messages[number:]:
                            self._settle(unsent, failed)
                        break
        finally:
            self._publisher = None

    def _fitting(self, group: _Group) -> list[tuple[_Group, bytes]]:
        """`group` encoded, in halves while it is larger than the server takes a message
        (a lone batch that large is sent, and refused)."""
        payload = encoder.encode(group.batches)
        if len(payload) <= self.nats.max_payload or len(group.batches) == 1:
            return [(group, payload)]
        first, second = group.halves()
        return self._fitting(first) + self._fitting(second)

    async def _send(self, group: _Group, payload: bytes) -> None:
        msg_id = group_id(group.batches)
        headers = {"Nats-Msg-Id": msg_id, "Nats-Expected-Last-Sequence": str(self._expected)}
        self._expected += 1
        self._next_token += 1
        group.token = token = str(self._next_token)
        self._waiting[token] = group
        self._order.append((time.monotonic() + self.timeout, token))
        metrics.JOURNAL_GROUP.observe(len(group.batches))
        group.sent = time.perf_counter()
        await self.nats.publish(subjects.events(group.batches[0].symbol), payload,
                                reply=self._inbox + token, headers=headers)

    def _settle(self, group: _Group, outcome: int | BaseException) -> None:
        """Answer every command of `group`: its stream sequence, or why it failed."""
        self._waiting.pop(group.token, None)
        self.in_flight -= len(group.futures)
        for future in group.futures:
            if future.done():  # its waiter was cancelled
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def _on_ack(self, msg: Msg) -> None:
        group = self._waiting.get(msg.subject[len(self._inbox):])
        if group is None:
            return
        if not msg.data:  # a status message, e.g. 503 "no responders": no stream there
            status = msg.headers.get("Status", "?") if msg.headers else "?"
            self._settle(group, JournalError(f"no JetStream answer (status {status})"))
            return
        try:
            ack = _ack_decoder.decode(msg.data)
        except msgspec.DecodeError as error:
            self._settle(group, JournalError(f"unreadable acknowledgement: {error}"))
            return
        if ack.error is not None:
            self._settle(group, JournalError(
                f"JetStream refused the group: {ack.error.description} "
                f"({ack.error.err_code})"))
        elif ack.duplicate:  # the id of a group someone else appended: a deposed leader
            self._settle(group, JournalError("JetStream holds a group of this id already"))
        else:
            metrics.JOURNAL_ACK_SECONDS.observe(time.perf_counter() - group.sent)
            self._settle(group, ack.seq)

    async def _watch(self) -> None:
        """Fail every outstanding append once the oldest is overdue (acks come in order)."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            order, waiting = self._order, self._waiting
            while order and order[0][1] not in waiting:
                order.popleft()
            if order and order[0][0] < time.monotonic():
                overdue = JournalError(f"no acknowledgement within {self.timeout} s")
                for group in list(waiting.values()):
                    self._settle(group, overdue)
                order.clear()


async def stream_last_seq(js: JetStreamContext) -> int:
    info = await js.stream_info(subjects.STREAM)
    return int(info.state.last_seq)


async def read(nats: Nats, start: int, end: int, buffer: int = REPLAY_BUFFER,
               ) -> AsyncIterator[tuple[int, list[EventBatch]]]:
    """Yield (stream sequence, batches) for every journal message from stream sequence
    `start` to `end`: the batches of its group, in order (one step per message, not per
    batch: recovery replays a group in one go).

    One push consumer streams the range (`streamrange`), with none of a pull `fetch`'s
    per-message task and timer; at most `buffer` messages wait here. Messages removed
    from the stream (e.g. an unreadable one, by an operator) are never delivered, so the
    range ends at the last message still there. A message that holds no `EventBatch`es
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
                batches = batches_of(data)
            except msgspec.DecodeError as error:  # the reason names no part of the payload
                raise UnreadableJournal(seq, str(error)) from None
            yield seq, batches
            if seq == end:
                return
