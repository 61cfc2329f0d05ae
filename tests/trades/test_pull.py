"""The projection's fetch-ahead puller across a restart of its NATS server."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from common import subjects
from ops.stack import NatsServer
from svc_trades import pull
from svc_trades.pull import REQUEST_EXPIRES, Puller
from tests.helpers import eventually

DURABLE = "pulled"


@contextlib.asynccontextmanager
async def pulling(nc: Nats, js: JetStreamContext) -> AsyncIterator[Puller]:
    """A puller of ten messages at a time on a new durable consumer of the journal."""
    await js.add_consumer(subjects.STREAM, ConsumerConfig(
        durable_name=DURABLE, filter_subject=subjects.EVENTS_WILDCARD,
        ack_policy=AckPolicy.ALL))
    puller = Puller(nc, subjects.STREAM, DURABLE, batch=10)
    await puller.start()
    try:
        yield puller
    finally:
        await puller.close()


async def test_after_a_reconnect_it_asks_again_at_once(
        private_nats: NatsServer, nc: Nats, js: JetStreamContext) -> None:
    """The server reconnected to knows none of the requests made before (nor will it
    say that they ended): the next fetch asks anew instead of waiting them out."""
    async with pulling(nc, js) as puller:
        await js.publish(subjects.events("DEFAULT"), b"before")
        [before] = await puller.next(REQUEST_EXPIRES)
        await before.ack_sync()  # stored before the kill, else it comes again

        private_nats.kill()  # no "409 Server Shutdown" to the requests: they just vanish
        await asyncio.to_thread(private_nats.start)
        await eventually(lambda: nc.is_connected and nc.stats["reconnects"] == 1, timeout=10)
        await js.publish(subjects.events("DEFAULT"), b"after")

        assert [msg.data for msg in await puller.next(REQUEST_EXPIRES / 2)] == [b"after"]


async def test_requests_bounded_in_bytes_deliver_everything_without_waiting(
        nc: Nats, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """Journal messages hold groups of commands, so each request is bounded in bytes too:
    the server ends it early (409 "Message Size Exceeds MaxBytes") and the puller asks
    again at once rather than waiting for the request to expire."""
    monkeypatch.setattr(pull, "REQUEST_BYTES", 2_000)
    async with pulling(nc, js) as puller:
        sent = [bytes([n]) * 700 for n in range(12)]  # 2 a request: 1,400 bytes
        sent += [bytes([n]) for n in range(25)]  # 10 a request: "409 Batch Completed"
        for data in sent:
            await js.publish(subjects.events("DEFAULT"), data)
        received: list[bytes] = []
        async with asyncio.timeout(REQUEST_EXPIRES / 2):
            while len(received) < len(sent):
                received += [msg.data for msg in await puller.next(REQUEST_EXPIRES)]
        assert received == sent
        assert puller.failure is None
