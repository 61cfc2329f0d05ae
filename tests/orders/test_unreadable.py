"""A journal message recovery cannot replay (issue 12: one garbage message on
`ex.events.DEFAULT` had svc_orders retry every second, silently, for ever).

The rule (README, Durability): recovery stops at that message and never skips it;
svc_orders stays unready (503), says which stream sequence and why on every attempt,
holds the alarm gauge at that sequence and backs off; a restart stops at the same
message. Once an operator removes it, the next attempt recovers by itself.
"""

import asyncio
from collections.abc import MutableMapping
from typing import Any

import msgspec
import pytest
import structlog
from nats import connect
from prometheus_client import REGISTRY

from common import subjects
from common.messages import EventBatch, OrderExpired
from ops.stack import NatsServer
from svc_orders import api, sequencer
from svc_orders.journaling import Journal, UnreadableJournal
from svc_orders.sequencer import Sequencer
from tests.helpers import AppClient, eventually

BUY = {"side": "buy", "quantity": 1, "price": 2}


def alarm() -> float | None:
    return REGISTRY.get_sample_value("orders_journal_unreadable")


async def restart_recovery(orders: AppClient) -> None:
    """What a restarted svc_orders does first, on the same journal."""
    running = orders.app[api.SEQUENCER]
    fresh = Sequencer(running.js, Journal(running.journal.nats, 1.0), running.bucket,
                      running.instruments, snapshot_every=running.snapshot_every)
    await fresh.recover()


@pytest.mark.parametrize("garbage", [
    b"\xc1 not msgpack",
    # an EventBatch, but one that cannot follow the state: the forged seq of issue 12
    msgspec.msgpack.encode(EventBatch(symbol="DEFAULT", seq=10**12, events=[OrderExpired(
        seq=10**12, timestamp=0, order_id="00000000-0000-4000-8000-000000000000",
        quantity=1)])),
], ids=["not-a-batch", "does-not-follow"])
async def test_recovery_stops_at_an_unreadable_message_with_an_alarm_and_backs_off(
        orders: AppClient, nats: NatsServer, garbage: bytes,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sequencer, "RETRY_FIRST", 0.05)
    placed = await orders.post("/orders/", json=BUY)
    assert placed.status == 201
    order_id = (await placed.json())["order_id"]
    admin = await connect(nats.url)
    try:
        bad = (await admin.jetstream().publish(subjects.events("DEFAULT"), garbage)).seq

        with structlog.testing.capture_logs() as logs:
            # The next append names its predecessor, which is no longer the last: refused.
            assert (await orders.post("/orders/", json=BUY)).status == 503

            def failures() -> list[MutableMapping[str, Any]]:
                return [entry for entry in logs if entry["event"] == "recovery failed, retrying"]

            await eventually(lambda: len(failures()) >= 4)
        failed = failures()
        assert [entry["retry_in"] for entry in failed[:4]] == [0.05, 0.1, 0.2, 0.4]
        assert all(f"journal message {bad} cannot be replayed" in str(entry["error"])
                   for entry in failed)
        assert alarm() == bad
        assert not orders.app[api.SEQUENCER].ready
        assert (await orders.get("/ready/")).status == 503
        assert (await orders.post("/orders/", json=BUY)).status == 503

        with pytest.raises(UnreadableJournal) as stopped:
            await restart_recovery(orders)
        assert stopped.value.stream_seq == bad

        await admin.jetstream().delete_msg(subjects.STREAM, bad)  # what an operator does
        await eventually(lambda: orders.app[api.SEQUENCER].ready, timeout=10)
        assert alarm() == 0
        assert (await orders.get(f"/orders/{order_id}/")).status == 200
        assert (await orders.post("/orders/", json=BUY)).status == 201
    finally:
        await admin.close()



async def test_a_rebuild_in_progress_ends_with_the_service(
        orders: AppClient, nats: NatsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shutting down while recovery retries stops the retries: before, the loop went on
    after its app had closed, and its logs showed up in the next test's."""
    monkeypatch.setattr(sequencer, "RETRY_FIRST", 0.05)
    assert (await orders.post("/orders/", json=BUY)).status == 201
    admin = await connect(nats.url)
    try:
        bad = (await admin.jetstream().publish(subjects.events("DEFAULT"), b"\xc1")).seq
        assert (await orders.post("/orders/", json=BUY)).status == 503
        running = orders.app[api.SEQUENCER]
        with structlog.testing.capture_logs() as logs:
            await eventually(lambda: any(entry["event"] == "recovery failed, retrying"
                                         for entry in logs))
            await running.stop()
            stopped_at = len(logs)
            await asyncio.sleep(0.3)  # several retry periods
        assert [entry for entry in logs[stopped_at:]
                if entry["event"] == "recovery failed, retrying"] == []
    finally:
        await admin.jetstream().delete_msg(subjects.STREAM, bad)  # the next test's journal
        await admin.close()
