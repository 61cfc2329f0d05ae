"""Group commit: the commands of one event-loop step share one journal message.

A group JetStream refuses fails every command in it (503), and the service rebuilds
from the journal; recovery reads journals written one batch per message (before group
commit), in groups, or both.
"""

import asyncio
import uuid

import msgspec
from nats import connect
from nats.aio.msg import Msg

from common import subjects
from common.journal import batches_of, group_id
from common.messages import EventBatch, OrderAccepted, PlaceOrder, Side, encoder
from ops.stack import NatsServer
from svc_orders import api
from svc_orders.journaling import Journal, stream_last_seq
from svc_orders.matching import Exchange
from svc_orders.sequencer import Sequencer, Unavailable
from svc_orders.store import OrderStore
from tests.helpers import AppClient, eventually
from tests.trades.journal import INSTRUMENTS, grouped, publish, publish_groups, random_batches

SELL = {"side": "sell", "quantity": 5, "price": 100}


def place(n: int, side: Side = Side.BUY) -> PlaceOrder:
    return PlaceOrder(order_id=str(uuid.UUID(int=n, version=4)), symbol="DEFAULT",
                      side=side, quantity=1, price=100 + n, timestamp=n)


async def test_one_step_is_one_message_and_each_command_its_own_answer(
        orders: AppClient, nats: NatsServer) -> None:
    """Read back from the stream (not heard on the subject, which would race the
    subscription): the five acknowledged commands are one stored message."""
    sequencer = orders.app[api.SEQUENCER]
    watcher = await connect(nats.url)
    js = watcher.jetstream()
    try:
        before = await stream_last_seq(js)
        outcomes = await asyncio.gather(*(sequencer.submit(place(n)) for n in range(1, 6)))
        assert await stream_last_seq(js) == before + 1
        stored = await js.get_last_msg(subjects.STREAM, subjects.EVENTS_WILDCARD)
        assert stored.data is not None
        assert [batch.seq for batch in batches_of(stored.data)] == [1, 2, 3, 4, 5]
        assert [outcome.order.order_id for outcome in outcomes if outcome.order] == [
            place(n).order_id for n in range(1, 6)]
    finally:
        await watcher.close()


async def test_a_refused_group_fails_every_command_in_it_and_recovers_to_the_journal(
        orders: AppClient, nats: NatsServer) -> None:
    """Another writer appended behind the service's back: the service's next group names
    a predecessor that is no longer the last, and JetStream refuses it whole."""
    sequencer = orders.app[api.SEQUENCER]
    assert (await orders.post("/orders/", json=SELL)).status == 201  # seq 1
    foreign = place(100)
    stranger = EventBatch(symbol="DEFAULT", seq=2, events=[OrderAccepted(seq=2, order=foreign)])
    watcher = await connect(nats.url)
    published: list[list[EventBatch]] = []

    async def seen(msg: Msg) -> None:
        published.append(batches_of(msg.data))

    await watcher.subscribe(subjects.EVENTS_WILDCARD, cb=seen)
    await watcher.flush()
    try:
        await watcher.jetstream().publish(subjects.events("DEFAULT"), encoder.encode([stranger]),
                                          headers={"Nats-Msg-Id": group_id([stranger])})
        outcomes = await asyncio.gather(*(sequencer.submit(place(n)) for n in range(1, 6)),
                                        return_exceptions=True)
        assert all(isinstance(outcome, Unavailable) for outcome in outcomes), outcomes
        # The five went out as one message (after the stranger's), and none was stored.
        await eventually(lambda: len(published) == 2)
        assert [[batch.seq for batch in group] for group in published] == [
            [2], [2, 3, 4, 5, 6]]

        # Every command answers 503 while the service fences, then it is the journal's.
        answers = await asyncio.gather(*(orders.post("/orders/", json=SELL) for _ in range(3)))
        assert {answer.status for answer in answers} <= {201, 503}
        await eventually(lambda: sequencer.ready, timeout=10)
        assert sequencer.engine.seq("DEFAULT") >= 2
        assert sequencer.store.get(foreign.order_id) is not None
        assert all(sequencer.store.get(place(n).order_id) is None for n in range(1, 6))
        assert (await orders.post("/orders/", json=SELL)).status == 201
        await sequencer.acknowledged()

        fresh = Sequencer(sequencer.js, Journal(sequencer.journal.nats, 1.0),
                          sequencer.bucket, sequencer.instruments,
                          snapshot_every=sequencer.snapshot_every)
        await fresh.recover()
        assert fresh.engine.capture() == sequencer.engine.capture()
        assert fresh.store.live == sequencer.store.live
    finally:
        await watcher.close()


async def test_a_group_over_http_answers_every_command_503(
        orders: AppClient, nats: NatsServer) -> None:
    """The same refusal through the API: the places in flight when the journal refuses
    answer 503 with the contract's error; any sent after the service rebuilt (it reads
    the stranger's batch and goes on) are accepted, and the journal holds each of them."""
    assert (await orders.post("/orders/", json=SELL)).status == 201
    stranger = EventBatch(symbol="DEFAULT", seq=2,
                          events=[OrderAccepted(seq=2, order=place(100))])
    admin = await connect(nats.url)
    try:
        await admin.jetstream().publish(subjects.events("DEFAULT"), encoder.encode([stranger]))
    finally:
        await admin.close()
    answers = await asyncio.gather(*(orders.post("/orders/", json=SELL) for _ in range(8)))
    statuses = [answer.status for answer in answers]
    assert statuses[0] == 503
    assert set(statuses) <= {201, 503}
    refused = [answer for answer in answers if answer.status == 503]
    assert {(await answer.json())["error"]["code"] for answer in refused} == {"UNAVAILABLE"}
    accepted = [(await answer.json())["order_id"] for answer in answers
                if answer.status == 201]

    async def journaled() -> bool:  # once the service is ready again
        return all([(await orders.get(f"/orders/{order_id}/")).status == 200
                    for order_id in accepted])

    await eventually(journaled, timeout=10)


async def test_recovery_reads_a_journal_written_before_and_after_group_commit(
        orders: AppClient) -> None:
    """Half the journal one `EventBatch` per message, as svc_orders wrote it before group
    commit, half in groups: a restart rebuilds exactly what the engine did."""
    running = orders.app[api.SEQUENCER]
    batches = random_batches(400, seed=7)
    half = len(batches) // 2
    js = running.js
    await publish(js, batches[:half])
    groups = grouped(batches[half:], seed=7)
    assert max(map(len, groups)) > 1
    await publish_groups(js, groups)

    fresh = Sequencer(js, Journal(running.journal.nats, 1.0), running.bucket, INSTRUMENTS,
                      snapshot_every=10**6)
    await fresh.recover()
    engine, store = Exchange(INSTRUMENTS), OrderStore()
    for batch in batches:
        engine.apply(batch)
        store.apply(batch)
    assert fresh.engine.capture() == engine.capture()
    assert msgspec.msgpack.encode(fresh.store.state()) == msgspec.msgpack.encode(store.state())


async def test_a_snapshot_captured_while_a_group_forms_loses_no_command_of_it(
        orders: AppClient) -> None:
    """A command, the snapshot's capture and another command in one step: the second
    must not share the first one's message, which the snapshot names as included."""
    sequencer = orders.app[api.SEQUENCER]
    before = asyncio.ensure_future(sequencer.submit(place(1)))
    snapshot = asyncio.ensure_future(sequencer._write_own())
    after = asyncio.ensure_future(sequencer.submit(place(2)))
    await asyncio.gather(before, snapshot, after)
    fresh = Sequencer(sequencer.js, Journal(sequencer.journal.nats, 1.0), sequencer.bucket,
                      sequencer.instruments, snapshot_every=sequencer.snapshot_every)
    await fresh.recover()
    assert fresh.store.get(place(2).order_id) is not None
    assert fresh.engine.capture() == sequencer.engine.capture()
