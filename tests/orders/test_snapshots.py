"""Service snapshots: what is saved loads back whole, chunk by chunk, with its digest."""

import os

import nats as nats_client

from ops.stack import NatsServer
from svc_orders import snapshots
from svc_orders.store import StoreState
from svc_orders.streamrange import Delivered


async def test_a_snapshot_of_many_chunks_loads_back_whole(nats: NatsServer) -> None:
    connection = await nats_client.connect(nats.url)
    try:
        bucket = await snapshots.bucket(connection.jetstream())
        assert await snapshots.load(connection, bucket) is None
        for size in (3_000_000, 10):  # many flow-control windows; then a newer one
            written = snapshots.ServiceSnapshot(
                stream_seq=size, engine=os.urandom(size),
                store=StoreState(live=[], keys=[(None, "key", "order")]))
            await snapshots.save(bucket, written)
            assert await snapshots.load(connection, bucket) == written
    finally:
        await connection.close()


def test_delivered_reads_both_acknowledgement_subject_forms() -> None:
    plain = Delivered("$JS.ACK.EXCHANGE.consumer.1.42.7.1733300000000000000.3")
    with_domain = Delivered("$JS.ACK.hub.ACCOUNTHASH.EXCHANGE.consumer.1.42.7."
                            "1733300000000000000.3.token")
    for delivered in (plain, with_domain):
        assert (delivered.stream_seq, delivered.consumer_seq, delivered.pending) == (42, 7, 3)
