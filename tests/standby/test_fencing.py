"""A deposed leader that still believes it leads (its clock says the lease is good: it
was paused, or its renewals are slow) gets nothing acknowledged: the journal refuses its
appends, however the new leader's appends and its own line up; it then sees the new
leader's takeover in the journal and steps down.

Two svc_orders applications share one JetStream. The lease is taken from the first
behind its back (its key deleted, as an expiry would) right after it renewed, with a
lease long enough that it keeps believing for the whole test.
"""

from __future__ import annotations

from typing import Any

import nats
import pytest
from aiohttp.test_utils import TestClient

from common import subjects
from common.config import Settings
from ops.stack import NatsServer, RedisServer
from svc_orders import journaling
from svc_orders.api import SEQUENCER
from svc_orders.app import LEADERSHIP
from tests.helpers import eventually
from tests.orders.test_durability import started

pytestmark = pytest.mark.integration

Client = TestClient[Any, Any]
ORDER = {"side": "buy", "price": "100", "quantity": 1}


def settings(private_nats: NatsServer, redis_server: RedisServer, url: str) -> Settings:
    return Settings(nats_url=private_nats.url, redis_url=redis_server.url,
                    journal_timeout=1.0, lease_ttl=10.0, orders_url=url)


async def ready(client: Client) -> bool:
    return (await client.get("/ready/")).status == 200


async def refused_as_standby(client: Client, leader: str) -> bool:
    response = await client.post("/orders/", json=ORDER)
    answer = await response.json()
    assert (response.status, answer["error"]["code"]) == (503, "NOT_LEADER"), answer
    assert answer["error"]["details"] == {"leader": leader}
    return True


async def journaled_seqs(url: str) -> list[int]:
    nc = await nats.connect(url)
    try:
        end = await journaling.stream_last_seq(nc.jetstream())
        return [batch.seq async for _, batches in journaling.read(nc, 1, end)
                for batch in batches]
    finally:
        await nc.close()


@pytest.mark.parametrize("new_leader_appends_first", [True, False])
async def test_a_deposed_leader_gets_nothing_acknowledged_and_steps_down(
        private_nats: NatsServer, redis_server: RedisServer,
        new_leader_appends_first: bool) -> None:
    a = await started(settings(private_nats, redis_server, "http://a.test"))
    b = await started(settings(private_nats, redis_server, "http://b.test"))
    try:
        assert await ready(a)
        assert not await ready(b)
        await refused_as_standby(b, "http://a.test")
        assert (await a.post("/orders/", json=ORDER)).status == 201

        old = a.app[LEADERSHIP]
        renewed = old.lease.revision
        await eventually(lambda: old.lease.revision != renewed, timeout=5)
        admin = await nats.connect(private_nats.url)
        kv = await admin.jetstream().key_value(subjects.LEADER_BUCKET)
        await kv.delete(subjects.LEADER_KEY)  # the lease is gone, as if it had expired
        await admin.close()
        await eventually(lambda: ready(b), timeout=5)
        assert old.leading(), "the old leader still believes it leads"

        if new_leader_appends_first:  # the old leader's next batch reuses this batch's id
            assert (await b.post("/orders/", json=ORDER)).status == 201
        response = await a.post("/orders/", json=ORDER)  # the takeover breaks its chain
        assert response.status == 503, await response.text()

        # Fenced, it rebuilt from the journal, found the takeover there, and stepped
        # down before taking another command.
        await a.app[SEQUENCER].settled()
        await refused_as_standby(a, "http://b.test")
        assert not await ready(a)
        assert (await b.post("/orders/", json=ORDER)).status == 201
        expected = [1, 2, 3] if new_leader_appends_first else [1, 2]
        assert await journaled_seqs(private_nats.url) == expected
    finally:
        await a.close()
        await b.close()
