"""The journal's replay read: every batch of a range, in order, once, whatever its size."""

import nats as nats_client
from prometheus_client import REGISTRY

from common import subjects
from common.journal import ensure_stream
from common.messages import EventBatch, OrderExpired, encoder
from ops.stack import NatsServer
from svc_orders import journaling


def batch(seq: int) -> EventBatch:
    expired = OrderExpired(seq=seq, timestamp=seq, order_id=f"order-{seq}", quantity=1)
    return EventBatch(symbol="DEFAULT", seq=seq, events=[expired])


async def test_read_yields_the_range_in_order_with_a_small_read_ahead(
        nats: NatsServer) -> None:
    connection = await nats_client.connect(nats.url)
    js = connection.jetstream()
    await ensure_stream(js)
    for seq in range(1, 301):
        await js.publish(subjects.events("DEFAULT"), encoder.encode(batch(seq)))

    read = [(stream_seq, item.seq)
            async for stream_seq, items in journaling.read(connection, 7, 250, buffer=5)
            for item in items]
    assert read == [(seq, seq) for seq in range(7, 251)]
    assert [item async for item in journaling.read(connection, 301, 300)] == []
    await connection.close()


async def test_appends_in_flight_are_a_gauge(nats: NatsServer) -> None:
    connection = await nats_client.connect(nats.url)
    await ensure_stream(connection.jetstream())
    appender = journaling.Journal(connection, timeout=5.0)
    await appender.start()
    try:
        ack = await appender.append(batch(1))
        assert REGISTRY.get_sample_value("orders_journal_in_flight") == 1
        await ack
        assert REGISTRY.get_sample_value("orders_journal_in_flight") == 0
    finally:
        await appender.close()
        await connection.close()


async def test_a_group_larger_than_a_message_goes_out_in_halves(nats: NatsServer) -> None:
    connection = await nats_client.connect(nats.url)
    await ensure_stream(connection.jetstream())
    connection._max_payload = 1_000  # as if the server took messages this small
    appender = journaling.Journal(connection, timeout=5.0)
    await appender.start()
    try:
        acks = [await appender.append(batch(seq)) for seq in range(1, 21)]  # one step
        stream_seqs = [await ack for ack in acks]
        assert 1 < len(set(stream_seqs)) < 20
        assert stream_seqs == sorted(stream_seqs)
        read = [item.seq async for _, items in journaling.read(connection, 1, 20)
                for item in items]
        assert read == list(range(1, 21))
    finally:
        await appender.close()
        await connection.close()


async def test_a_cut_ends_the_group_forming(nats: NatsServer) -> None:
    """What a snapshot relies on: after a cut, a batch of the same step goes in a later
    message, so the state captured at the cut ends with a whole message."""
    connection = await nats_client.connect(nats.url)
    await ensure_stream(connection.jetstream())
    appender = journaling.Journal(connection, timeout=5.0)
    await appender.start()
    try:
        before = [await appender.append(batch(seq)) for seq in (1, 2)]
        appender.cut()
        after = await appender.append(batch(3))  # the same step
        assert [await ack for ack in before] == [1, 1]
        assert await after == 2
    finally:
        await appender.close()
        await connection.close()
