"""Read a stored range of a JetStream stream as fast as the server sends it.

Recovery reads two such ranges: the snapshot's chunks in the object store and the
journal after it. nats-py's ordered consumer answers the server's flow-control requests
from a timer that runs every 0.25 s, so a large range spent most of its time waiting
(a 72 MB snapshot took 1.5 s, a third of it as fast). Here a plain push consumer with
flow control delivers to a core subscription, and each request is answered as soon as
every message sent before it is queued for the reader. The reader's queue is bounded,
so the server never runs more than a queue and a flow-control window ahead.

Each data message's consumer sequence must follow the previous one: a message lost on
the way (a reconnect) raises `GapError` instead of going unnoticed; the caller retries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, Header

IDLE = 5.0  # seconds without a message before a read gives up
HEARTBEAT = 1.0  # seconds between the server's idle heartbeats
_CONTROL = "100"  # status of flow-control requests and idle heartbeats


class GapError(Exception):
    """A message of the range did not arrive: the read must start again."""


class Delivered:
    """Where a delivered message sits: its stream sequence, and how many follow it."""

    __slots__ = ("consumer_seq", "pending", "stream_seq")

    def __init__(self, reply: str) -> None:
        # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>, or with
        # <domain>.<account hash> after ACK and a random token at the end.
        tokens = reply.split(".")
        offset = 0 if len(tokens) == 9 else 2
        self.stream_seq = int(tokens[5 + offset])
        self.consumer_seq = int(tokens[6 + offset])
        self.pending = int(tokens[8 + offset])


async def messages(nats: Nats, stream: str, subject: str, start: int, buffer: int,
                   ) -> AsyncGenerator[tuple[Delivered, bytes], None]:
    """Every message on `subject` from stream sequence `start` on, in order, until the
    caller stops (use `contextlib.aclosing`: the consumer is deleted on close)."""
    arrived: asyncio.Queue[Msg] = asyncio.Queue(buffer)

    async def on_message(msg: Msg) -> None:
        headers = msg.headers
        if headers is None or headers.get(Header.STATUS) != _CONTROL or msg.data:
            await arrived.put(msg)  # waits while the reader is `buffer` behind
            return
        # Flow control asks on `reply`; a heartbeat names a stalled request, if any.
        answer = msg.reply or headers.get(Header.CONSUMER_STALLED)
        if answer:
            await nats.publish(answer)

    inbox = nats.new_inbox()
    # No limit of nats-py's own: flow control and the bounded queue above limit it.
    subscription = await nats.subscribe(inbox, cb=on_message, pending_msgs_limit=0,
                                        pending_bytes_limit=0)
    js = nats.jetstream()
    consumer = None
    try:
        consumer = await js.add_consumer(stream, ConsumerConfig(
            deliver_subject=inbox, filter_subject=subject,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
            ack_policy=AckPolicy.NONE, max_deliver=1, flow_control=True,
            idle_heartbeat=HEARTBEAT, mem_storage=True, num_replicas=1))
        expected = 1
        while True:
            if arrived.empty():
                async with asyncio.timeout(IDLE):
                    msg = await arrived.get()
            else:
                msg = arrived.get_nowait()
            delivered = Delivered(msg.reply)
            if delivered.consumer_seq != expected:
                raise GapError(f"{stream}: message {expected} of the range did not arrive")
            expected += 1
            yield delivered, msg.data
    finally:
        await subscription.unsubscribe()
        if consumer is not None:
            with contextlib.suppress(Exception):  # the server drops it without interest
                await js.delete_consumer(stream, consumer.name)
