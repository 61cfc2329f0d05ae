"""The projection is the fold of the journal, exactly once, whatever happens on the way.

Journals come from random commands through the real engine (tests/trades/journal.py);
what PostgreSQL ends up holding is compared with `common.orderstate` folding the same
batches: every order field, every trade, and the order of the rows.
"""

import asyncio
import string
from random import Random

import asyncpg
import msgspec
import prometheus_client
import pytest
import structlog
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext

from common import subjects
from common.messages import Event, EventBatch, OrderAccepted, TradeExecuted, encoder
from common.orderstate import OrderState, apply
from svc_trades import changes
from svc_trades.projector import DURABLE
from svc_trades.rows import moment
from tests.trades.journal import (
    BUY,
    SELL,
    U1,
    U2,
    U3,
    Desk,
    assert_projects,
    caught_up,
    grouped,
    projected_with_stops,
    projecting,
    publish,
    publish_groups,
    random_batches,
    start,
    stop,
    table,
    trade_ids,
)


def counted(name: str, **labels: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_projection_is_the_fold_of_the_journal(pool: asyncpg.Pool, nc: Nats,
                                                     js: JetStreamContext) -> None:
    batches = random_batches(500, seed=1)
    await publish(js, batches)
    async with projecting(pool, nc):
        await caught_up(pool, js)
    await assert_projects(pool, batches)
    assert len(await table(pool, "trades")) > 100  # the journal really trades


async def test_a_journal_written_before_and_after_group_commit_projects_the_same(
        pool: asyncpg.Pool, nc: Nats, js: JetStreamContext) -> None:
    """Half the journal one batch per message (as before group commit), half in groups;
    a replay of the groups writes nothing twice."""
    batches = random_batches(500, seed=3)
    half = len(batches) // 2
    await publish(js, batches[:half])
    groups = grouped(batches[half:], seed=3)
    assert max(map(len, groups)) > 1
    await publish_groups(js, groups)
    async with projecting(pool, nc, batch=13):
        await caught_up(pool, js)
    await assert_projects(pool, batches)

    skipped = counted("trades_projection_messages_total", outcome="duplicate")
    await publish_groups(js, groups[:5], deduplicate=False)  # journaled twice
    async with projecting(pool, nc):
        await caught_up(pool, js)
    await assert_projects(pool, batches)
    assert counted("trades_projection_messages_total", outcome="duplicate") - skipped == 5


async def test_duplicates_and_replays_write_nothing_twice(pool: asyncpg.Pool,
                                                          nc: Nats, js: JetStreamContext) -> None:
    batches = random_batches(300, seed=2)
    half = len(batches) // 2
    await publish(js, batches[:half])
    await publish(js, batches[:half], deduplicate=False)  # journaled twice
    await publish(js, batches[half:])
    await publish(js, batches[half - 10:half + 10], deduplicate=False)
    skipped = counted("trades_projection_messages_total", outcome="duplicate")
    async with projecting(pool, nc):
        await caught_up(pool, js)
    await assert_projects(pool, batches)
    assert counted("trades_projection_messages_total", outcome="duplicate") - skipped == (
        half + 20)

    before = {name: await table(pool, name) for name in ("orders", "trades")}
    await pool.execute("UPDATE projection_consumers SET stream_seq = 0")  # replay it all
    async with projecting(pool, nc, batch=100):
        await caught_up(pool, js)
    assert {name: await table(pool, name) for name in ("orders", "trades")} == before


async def test_killed_anywhere_mid_run_it_ends_the_same(pool: asyncpg.Pool,
                                                        nc: Nats, js: JetStreamContext) -> None:
    batches = random_batches(600, seed=3)
    await publish(js, batches)
    await projected_with_stops(pool, nc, js, (40, 150, 300))
    await assert_projects(pool, batches)


async def test_poison_messages_are_parked_and_the_journal_goes_on(
        pool: asyncpg.Pool, nc: Nats, js: JetStreamContext) -> None:
    batches = random_batches(80, seed=4)
    await publish(js, batches[:30])
    await js.publish(subjects.events("DEFAULT"), b"\xc1 not msgpack")
    unknown_event = msgspec.msgpack.encode(
        {"symbol": "DEFAULT", "seq": 999, "events": [{"kind": "ex\x00ploded"}]})
    await js.publish(subjects.events("DEFAULT"), unknown_event)
    await js.publish(subjects.events("NOPE"), encoder.encode(
        EventBatch(symbol="NOPE", seq=1, events=[])))
    await publish(js, batches[30:])
    parked = counted("trades_projection_messages_total", outcome="parked")
    async with projecting(pool, nc, batch=10) as projector:
        await caught_up(pool, js)
        assert projector.running
        consumer = await js.consumer_info(subjects.STREAM, DURABLE)
        assert (consumer.num_ack_pending, consumer.num_pending) == (0, 0)
    await assert_projects(pool, batches)
    rows = await pool.fetch("SELECT subject, reason FROM parked_messages ORDER BY stream_seq")
    assert [row["subject"] for row in rows] == ["ex.events.DEFAULT", "ex.events.DEFAULT",
                                                "ex.events.NOPE"]
    assert rows[0]["reason"].startswith("undecodable")
    assert "ex\ufffdploded" in rows[1]["reason"]  # the decoder quotes it; text holds no NUL
    assert rows[2]["reason"] == "unknown instrument 'NOPE'"
    assert counted("trades_projection_messages_total", outcome="parked") - parked == 3


async def test_one_projector_leads_and_a_standby_takes_over(pool: asyncpg.Pool,
                                                            nc: Nats, js: JetStreamContext) -> None:
    batches = random_batches(300, seed=5)
    await publish(js, batches[:150])
    first, leading = start(pool, nc, batch=20)
    await caught_up(pool, js)
    second, standing_by = start(pool, nc, batch=20)
    await asyncio.sleep(0.3)
    assert (first.running, second.running) == (True, False)
    await stop(leading)
    await publish(js, batches[150:])
    await caught_up(pool, js)
    assert second.running
    await stop(standing_by)
    await assert_projects(pool, batches)


async def test_a_journal_without_its_beginning_is_projected_as_far_as_it_can(
        pool: asyncpg.Pool, nc: Nats, js: JetStreamContext) -> None:
    batches = random_batches(200, seed=6)
    gaps = counted("trades_projection_gaps_total")
    orphans = counted("trades_projection_orphan_events_total")
    await publish(js, batches[50:])
    async with projecting(pool, nc) as projector:
        await caught_up(pool, js)
        assert projector.running
    assert counted("trades_projection_gaps_total") - gaps == 2  # one per instrument
    assert [str(row["trade_id"]) for row in await table(pool, "trades")] == trade_ids(
        batches[50:])
    assert counted("trades_projection_orphan_events_total") > orphans


async def test_an_order_id_used_again_after_its_order_finished(
        pool: asyncpg.Pool, nc: Nats, js: JetStreamContext) -> None:
    """The engine accepts an id again once its order is gone: the fold replaces the old
    order, and so must the projection (its COPY meets the old row: the careful path)."""
    desk = Desk()
    reused = desk.place(BUY, 10, 10_000, user=U1)
    desk.place(SELL, 10, 10_000, user=U2)
    desk.place(BUY, 7, 9_900, user=U3, order_id=reused)
    desk.place(SELL, 2, 9_900, user=U2)
    await publish(js, desk.batches)
    async with projecting(pool, nc, batch=1):
        await caught_up(pool, js)
    await assert_projects(pool, desk.batches)
    [row] = await pool.fetch("SELECT user_id, traded_quantity FROM orders WHERE order_id = $1",
                             reused)
    assert (row["user_id"], row["traded_quantity"]) == (U3, 2)


async def test_a_value_postgresql_cannot_store_does_not_stop_the_projection(
        pool: asyncpg.Pool, nc: Nats, js: JetStreamContext) -> None:
    """NUL in text (journaled before the API refused control characters) is stored as
    U+FFFD; the orders and trades around it are projected as usual."""
    desk = Desk()
    desk.place(BUY, 10, 10_000, user="user\x00x", client_order_id="a\x00b")
    desk.place(SELL, 4, 10_000, user=U2, order_id="id\x00with-nul")
    desk.place(BUY, 5, 9_000, user=U1)
    await publish(js, desk.batches)
    async with projecting(pool, nc, batch=1) as projector:
        await caught_up(pool, js)
        assert projector.running
    rows = await pool.fetch("SELECT order_id, user_id, client_order_id, traded_quantity "
                            "FROM orders ORDER BY id")
    assert [(row["user_id"], row["client_order_id"], row["traded_quantity"])
            for row in rows] == [("user\ufffdx", "a\ufffdb", 4), (U2, None, 4), (U1, None, 0)]
    assert rows[1]["order_id"] == "id\ufffdwith-nul"
    [trade] = await table(pool, "trades")
    assert (trade["buyer_user_id"], trade["sell_order_id"]) == ("user\ufffdx",
                                                                 "id\ufffdwith-nul")



def _order_with(batch: EventBatch, **fields: object) -> EventBatch:
    """`batch` with its new order placed with `fields`: values the engine never journals,
    but a journal can hold."""
    events = [msgspec.structs.replace(event, order=msgspec.structs.replace(
        event.order, **fields)) if isinstance(event, OrderAccepted) else event
        for event in batch.events]
    return msgspec.structs.replace(batch, events=events)


def _trade_with(batch: EventBatch, **fields: object) -> EventBatch:
    events = [msgspec.structs.replace(event, **fields) if isinstance(event, TradeExecuted)
              else event for event in batch.events]
    return msgspec.structs.replace(batch, events=events)


BIGINT_PAST = 2**63  # bigint columns end at 2^63 - 1; msgpack ints reach 2^64 - 1
LATEST_NS, EARLIEST_NS = 2**64 - 1, -(2**63)  # 2554 and 1677: the journal's extremes
# Past what a btree index row holds (2,704 bytes), even compressed.
UNINDEXABLE = "".join(Random(7).choices(string.ascii_letters + string.digits, k=20_000))


async def test_a_message_postgresql_refuses_is_parked_and_the_journal_goes_on(
        pool: asyncpg.Pool, nc: Nats, js: JetStreamContext) -> None:
    """A decodable batch whose rows PostgreSQL cannot take (a quantity past bigint, a
    client_order_id too long for its index) would fail its fetch's transaction on every
    attempt. The fetch is projected again one
    message per transaction: the message refused is parked (counted, logged as an error),
    the others are projected, and the journal goes on. Timestamps at either end of what
    a journal can hold fit timestamptz: they are projected as they are."""
    desk = Desk()
    desk.place(BUY, 10, 10_000, user=U1)
    desk.place(SELL, 4, 10_000, user=U2)  # a trade of 4, made a trade of 2^63 below
    desk.place(BUY, 5, 9_000, user=U1)  # resting, placed as 2^63 below
    desk.place(SELL, 3, 10_000, user=U3)  # a trade with the first, at the earliest time
    desk.place(BUY, 2, 8_000, user=U3)  # resting, placed at the latest time
    desk.place(SELL, 1, 10_000, user=U2)
    desk.place(BUY, 1, 7_000, user=U1)  # resting, its client_order_id made too long below
    desk.place(BUY, 1, 7_000, user=U2)
    good = desk.batches
    journal = [good[0], _trade_with(good[1], quantity=BIGINT_PAST),
               _order_with(good[2], quantity=BIGINT_PAST),
               _trade_with(good[3], timestamp=EARLIEST_NS),
               _order_with(good[4], timestamp=LATEST_NS), good[5],
               _order_with(good[6], client_order_id=UNINDEXABLE), good[7]]
    refused = [journal[1], journal[2], journal[6]]
    parked = counted("trades_projection_messages_total", outcome="parked")
    alarms = counted("trades_projection_refused_messages_total")
    gaps = counted("trades_projection_gaps_total")
    await publish(js, journal[:4])
    with structlog.testing.capture_logs() as logs:
        async with projecting(pool, nc) as projector:  # one fetch holds them all
            await caught_up(pool, js)
            await publish(js, journal[4:])
            await caught_up(pool, js)
            assert projector.running
    await assert_projects(pool, [batch for batch in journal if batch not in refused])
    rows = await pool.fetch("SELECT stream_seq, reason, data FROM parked_messages "
                            "ORDER BY stream_seq")
    assert [(row["stream_seq"], bytes(row["data"])) for row in rows] == [
        (2, encoder.encode(journal[1])), (3, encoder.encode(journal[2])),
        (7, encoder.encode(journal[6]))]
    assert [row["reason"].split(":")[:2] for row in rows] == [
        ["unstorable", " OverflowError"], ["unstorable", " OverflowError"],
        ["unstorable", " ProgramLimitExceededError"]]
    assert counted("trades_projection_messages_total", outcome="parked") - parked == 3
    assert counted("trades_projection_refused_messages_total") - alarms == 3
    assert counted("trades_projection_gaps_total") == gaps  # parked past, not a gap
    errors = [entry for entry in logs if entry["log_level"] == "error"
              and entry["event"] == "journal message parked"]
    assert [entry["stream_seq"] for entry in errors] == [2, 3, 7]
    [latest] = await pool.fetch("SELECT created_at FROM orders WHERE quantity = 2")
    assert latest["created_at"] == moment(LATEST_NS)


async def test_a_message_the_fold_fails_on_is_parked_and_the_journal_goes_on(
        pool: asyncpg.Pool, nc: Nats, js: JetStreamContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The fold is pure: if it fails on a message (a value it cannot take; here a bug
    made on purpose), the message is the cause. It is parked like one PostgreSQL
    refuses, and the rest of its fetch is projected."""
    desk = Desk()
    desk.place(BUY, 10, 10_000, user=U1)
    failing = desk.place(BUY, 5, 9_000, user=U2)
    desk.place(SELL, 3, 10_000, user=U3)

    def apply_but(states: dict[str, OrderState], event: Event,
                  key_id: str | None = None) -> None:
        if isinstance(event, OrderAccepted) and event.order.order_id == failing:
            raise ArithmeticError("cannot fold this")
        apply(states, event, key_id)

    monkeypatch.setattr(changes, "apply", apply_but)
    alarms = counted("trades_projection_refused_messages_total")
    await publish(js, desk.batches)
    async with projecting(pool, nc) as projector:
        await caught_up(pool, js)
        assert projector.running
    await assert_projects(pool, [desk.batches[0], desk.batches[2]])
    [row] = await pool.fetch("SELECT stream_seq, reason FROM parked_messages")
    assert (row["stream_seq"], row["reason"]) == (
        2, "unfoldable: ArithmeticError: cannot fold this")
    assert counted("trades_projection_refused_messages_total") - alarms == 1
