"""The durable journal: every state-changing command's `EventBatch` on JetStream.

Appends are pipelined (many acknowledgements outstanding) yet ordered: a batch is
buffered on the connection in the same event-loop step in which the engine produced it,
and each one names its predecessor (`Nats-Expected-Last-Msg-Id`; after a recovery the
first names the stream's last sequence instead). JetStream therefore refuses a batch
whose predecessor was lost, so the journal is always a gap-free prefix of what the
engine did, and `Nats-Msg-Id` makes a retried append harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, PubAck

from common import subjects
from common.messages import EventBatch, batch_decoder, encoder

REPLAY_FETCH = 1_000
WARMUP_SUBJECT = "ex.journal.warmup"  # core subject, no listener: only opens the inbox


class Journal:
    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.last_stream_seq = 0  # the stream's last sequence when the chain restarted
        self._last_msg_id: str | None = None
        self.last_ack: asyncio.Future[PubAck] | None = None
        self.in_flight = 0

    async def start(self) -> None:
        """Open nats-py's acknowledgement inbox now, so no later append has to wait for it."""
        warmup = await self.js.publish_async(WARMUP_SUBJECT, b"")
        warmup.cancel()

    def restart_chain(self, last_stream_seq: int) -> None:
        """After a recovery: the next append must follow stream sequence `last_stream_seq`."""
        self.last_stream_seq = last_stream_seq
        self._last_msg_id = None
        self.last_ack = None

    async def append(self, batch: EventBatch) -> asyncio.Future[PubAck]:
        """Buffer `batch` for JetStream and return the future of its acknowledgement.

        Does not suspend before the message is buffered (nats-py only waits when more
        than its pending limit is outstanding; callers keep `in_flight` below that).
        """
        msg_id = subjects.batch_id(batch.symbol, batch.seq)
        headers = {"Nats-Msg-Id": msg_id}
        if self._last_msg_id is None:
            headers["Nats-Expected-Last-Sequence"] = str(self.last_stream_seq)
        else:
            headers["Nats-Expected-Last-Msg-Id"] = self._last_msg_id
        self._last_msg_id = msg_id
        future = await self.js.publish_async(
            subjects.events(batch.symbol), encoder.encode(batch), headers=headers)
        self.in_flight += 1
        future.add_done_callback(self._landed)
        self.last_ack = future
        return future

    def _landed(self, _: asyncio.Future[PubAck]) -> None:
        self.in_flight -= 1


async def stream_last_seq(js: JetStreamContext) -> int:
    info = await js.stream_info(subjects.STREAM)
    return int(info.state.last_seq)


async def read(js: JetStreamContext, start: int, end: int,
               ) -> AsyncIterator[tuple[int, EventBatch]]:
    """Yield (stream sequence, batch) for every journaled batch from `start` to `end`."""
    if start > end:
        return
    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                            opt_start_seq=start, ack_policy=AckPolicy.NONE,
                            inactive_threshold=60.0)
    reader = await js.pull_subscribe(subjects.EVENTS_WILDCARD, stream=subjects.STREAM,
                                     config=config)
    try:
        seq = start - 1
        while seq < end:
            for msg in await reader.fetch(REPLAY_FETCH, timeout=5.0):
                seq = msg.metadata.sequence.stream
                if seq > end:
                    break
                yield seq, batch_decoder.decode(msg.data)
    finally:
        await reader.unsubscribe()
