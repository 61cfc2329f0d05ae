"""Service snapshots: written from a forked child as the state was at the fork, loaded
back whole, chunk by chunk, with their digest; written by a standby, so that the leader
need not fork."""

import asyncio
import functools
import itertools
import os
import uuid

import msgspec
import nats as nats_client
import pytest

from common.messages import PlaceOrder, Side
from ops.stack import NatsServer
from svc_orders import api, snapshots
from svc_orders.follower import Follower
from svc_orders.journaling import Journal, stream_last_seq
from svc_orders.sequencer import Sequencer
from svc_orders.store import StoreState
from svc_orders.streamrange import Delivered
from tests.helpers import AppClient

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
        assert await snapshots.stored_seq(bucket) == 0
        for size in (3_000_000, 10):  # many flow-control windows; then a newer one
            engine = os.urandom(size)
            assert await snapshots.save(bucket, functools.partial(pair, engine),
                                        known(size)) == size
            assert await snapshots.load(connection, bucket) == snapshots.ServiceSnapshot(
                size, engine, STORE)
            assert await snapshots.stored_seq(bucket) == size  # read from its header
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


def place(n: int) -> PlaceOrder:
    """Resting buys, never crossing: each command one batch."""
    return PlaceOrder(order_id=str(uuid.UUID(int=n, version=4)), symbol="DEFAULT",
                      side=Side.BUY, quantity=1, price=100 + n % 50, timestamp=n)


async def test_a_standby_writes_the_snapshots_and_the_leader_then_forks_for_none(
        orders: AppClient) -> None:
    """Every 50 commands (the fixture's EX_SNAPSHOT_EVERY) a snapshot is due. The leader
    writes its own until it finds a standby's stored; then none while the standby's keep
    coming, and its own again half an interval after they stop. A standby's snapshot
    restores exactly the leader's state."""
    leader = orders.app[api.SEQUENCER]
    own = []  # the leader's own snapshots
    write_own = leader._write_own

    async def counted() -> None:
        own.append("fork")
        await write_own()
    leader._write_own = counted  # type: ignore[method-assign]
    standby = Sequencer(leader.js, Journal(leader.journal.nats, 1.0), leader.bucket,
                        leader.instruments, snapshot_every=leader.snapshot_every)
    await standby.recover()
    follower = Follower(leader.journal.nats, standby)
    placed = itertools.count(1)

    async def commands(count: int) -> None:
        for _ in range(count):
            await leader.submit(place(next(placed)))
        if leader._snapshot_task is not None:
            await leader._snapshot_task

    async def standby_follows() -> int:
        await follower.catch_up()
        standby.snapshot_followed()
        assert standby._snapshot_task is not None
        await standby._snapshot_task
        return await snapshots.stored_seq(leader.bucket)

    await commands(50)
    assert len(own) == 1  # no standby's snapshot yet: the leader's own
    await commands(10)
    assert await standby_follows() == standby.position == await stream_last_seq(leader.js)

    fresh = Sequencer(leader.js, Journal(leader.journal.nats, 1.0), leader.bucket,
                      leader.instruments, snapshot_every=leader.snapshot_every)
    await fresh.recover()
    assert fresh.engine.capture() == leader.engine.capture()
    assert msgspec.msgpack.encode(fresh.store.state()) == msgspec.msgpack.encode(
        leader.store.state())

    await commands(40)  # 50 since the leader's own: the standby's is newer
    assert len(own) == 1
    await commands(50)  # none newer: the standby's may be on its way, half an interval
    assert len(own) == 1
    await commands(25)
    assert len(own) == 2  # none came: the leader's own again
    assert await snapshots.stored_seq(leader.bucket) == await stream_last_seq(leader.js)
