"""Service snapshots: written from a forked child as the state was at the fork, loaded
back whole, chunk by chunk, with their digest."""

import asyncio
import functools
import os

import nats as nats_client
import pytest

from ops.stack import NatsServer
from svc_orders import snapshots
from svc_orders.store import StoreState
from svc_orders.streamrange import Delivered

STORE = StoreState(live=[], keys=[(None, "key", "order")])


def pair(engine: bytes) -> tuple[bytes, StoreState]:
    return engine, STORE


async def known(seq: int) -> int:
    return seq


async def failed() -> int:
    raise RuntimeError("journal down")


async def test_a_snapshot_of_many_chunks_loads_back_whole(nats: NatsServer) -> None:
    connection = await nats_client.connect(nats.url)
    try:
        bucket = await snapshots.bucket(connection.jetstream())
        assert await snapshots.load(connection, bucket) is None
        for size in (3_000_000, 10):  # many flow-control windows; then a newer one
            engine = os.urandom(size)
            assert await snapshots.save(bucket, functools.partial(pair, engine),
                                        known(size)) == size
            assert await snapshots.load(connection, bucket) == snapshots.ServiceSnapshot(
                size, engine, STORE)
    finally:
        await connection.close()


async def test_the_child_writes_the_state_as_it_was_at_the_fork(nats: NatsServer) -> None:
    connection = await nats_client.connect(nats.url)
    try:
        bucket = await snapshots.bucket(connection.jetstream())
        state = [b"at the fork"]
        journaled = asyncio.get_running_loop().create_future()
        saving = asyncio.create_task(snapshots.save(bucket, lambda: (state[0], STORE),
                                                    journaled))
        await asyncio.sleep(0.05)  # forked; waiting for the journal
        state[0] = b"later"
        journaled.set_result(7)
        assert await saving == 7
        loaded = await snapshots.load(connection, bucket)
        assert loaded == snapshots.ServiceSnapshot(7, b"at the fork", STORE)
    finally:
        await connection.close()


async def test_nothing_is_written_when_the_journal_fails(nats: NatsServer) -> None:
    connection = await nats_client.connect(nats.url)
    try:
        bucket = await snapshots.bucket(connection.jetstream())
        await snapshots.save(bucket, lambda: (b"kept", STORE), known(3))
        with pytest.raises(RuntimeError, match="journal down"):
            await snapshots.save(bucket, lambda: (b"lost", STORE), failed())
        assert await snapshots.load(connection, bucket) == snapshots.ServiceSnapshot(
            3, b"kept", STORE)
    finally:
        await connection.close()


def test_delivered_reads_both_acknowledgement_subject_forms() -> None:
    plain = Delivered("$JS.ACK.EXCHANGE.consumer.1.42.7.1733300000000000000.3")
    with_domain = Delivered("$JS.ACK.hub.ACCOUNTHASH.EXCHANGE.consumer.1.42.7."
                            "1733300000000000000.3.token")
    for delivered in (plain, with_domain):
        assert (delivered.stream_seq, delivered.consumer_seq, delivered.pending) == (42, 7, 3)
