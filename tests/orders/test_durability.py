"""Durability: restarts rebuild exactly, a NATS outage answers 503 and heals."""

import asyncio
import json
import random
from typing import Any

import redis.asyncio as redis
from aiohttp.test_utils import TestClient, TestServer

from common import cache
from common.config import Settings
from common.messages import EventBatch, Side
from common.views import TradeView
from ops.stack import NatsServer
from svc_orders import api
from svc_orders.app import create_app
from tests.helpers import AppClient, eventually
from tests.system import paused

Client = AppClient
USERS = ["123e4567-e89b-12d3-a456-42661417400" + str(n) for n in range(3)]


async def started(settings: Settings) -> Client:
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    return client


async def ready(client: Client) -> bool:
    """Ready means leading too: after an outage the lease is renewed or taken again."""
    return (await client.get("/ready/")).status == 200


def book(client: Client) -> Any:
    engine = client.app[api.SEQUENCER].engine
    return [engine.levels("DEFAULT", side) for side in Side], engine.seq("DEFAULT")


def orders(client: Client) -> Any:
    store = client.app[api.SEQUENCER].store
    return sorted(store.live.items()), sorted(store.keys.items())


async def random_traffic(client: Client, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    placed: list[str] = []
    for n in range(count):
        if placed and rng.random() < 0.3:
            order_id = rng.choice(placed)
            if rng.random() < 0.5:
                await client.delete(f"/orders/{order_id}/")
            else:
                await client.put(f"/orders/{order_id}/", json={"price": rng.randint(95, 105)})
            continue
        response = await client.post("/orders/", json={
            "side": rng.choice(["buy", "sell"]), "quantity": rng.randint(1, 20),
            "price": rng.randint(95, 105), "user_id": rng.choice(USERS),
            "stp": rng.choice(["none", "cancel_oldest"]), "client_order_id": f"c{n}"})
        assert response.status == 201
        placed.append((await response.json())["order_id"])
    return placed


async def test_restart_rebuilds_books_orders_and_idempotency(settings: Settings) -> None:
    first = await started(settings)
    await random_traffic(first, 120, seed=1)  # snapshot_every=50: snapshots and a tail
    before_book, before_orders = book(first), orders(first)
    await first.close()

    second = await started(settings)
    try:
        assert book(second) == before_book
        assert orders(second) == before_orders
        repeat = await second.post("/orders/", json={
            "side": "buy", "quantity": 1, "price": 1, "user_id": USERS[0],
            "client_order_id": "c0"})
        assert repeat.status in (200, 201)
        store = second.app[api.SEQUENCER].store
        if store.by_key(USERS[0], "c0") is not None and repeat.status == 200:
            assert (await repeat.json())["order_id"] == store.by_key(USERS[0], "c0")
    finally:
        await second.close()


async def test_nats_outage_answers_503_then_heals(settings: Settings,
                                                  nats: NatsServer) -> None:
    """A 503 leaves the outcome open (the publish may land once NATS is back): the
    client's retry with the same client_order_id must then find exactly one order."""
    order = {"side": "buy", "quantity": 1, "price": 100, "user_id": USERS[0],
             "client_order_id": "during-outage"}
    client = await started(settings)
    try:
        await random_traffic(client, 20, seed=2)
        await asyncio.to_thread(nats.stop)
        loop = asyncio.get_running_loop()
        started_at = loop.time()
        response = await client.post("/orders/", json=order)
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "UNAVAILABLE"
        assert loop.time() - started_at < settings.journal_timeout + 1.0
        assert (await client.get("/ready/")).status == 503
        assert (await client.post("/orders/", json=order)).status == 503  # fenced
        await asyncio.to_thread(nats.start)
        await eventually(lambda: ready(client), timeout=15)
        retry = await client.post("/orders/", json=order)
        assert retry.status in (200, 201)
        again = await client.post("/orders/", json=order)
        assert (again.status, (await again.json())["order_id"]) == (
            200, (await retry.json())["order_id"])
        healed = book(client), orders(client)
    finally:
        await client.close()
    witness = await started(settings)  # a fresh process's view of the journal
    try:
        assert (book(witness), orders(witness)) == healed
    finally:
        await witness.close()


async def test_reads_never_show_what_the_journal_does_not_hold(settings: Settings,
                                                              nats: NatsServer) -> None:
    """A fill matched while NATS is down is never shown: not by GET /orders/{id}/, not in
    the cached book. Reads wait for the journal; when it fails them they answer 503."""
    client = await started(settings)
    cached = redis.Redis.from_url(settings.redis_url)
    try:
        await cached.delete(cache.book_key("DEFAULT"))
        response = await client.post("/orders/", json={"side": "sell", "quantity": 5,
                                                       "price": 100})
        resting = await response.json()
        sequencer = client.app[api.SEQUENCER]
        acknowledged_seq = sequencer.engine.seq("DEFAULT")
        await asyncio.to_thread(nats.stop)
        crossing = asyncio.create_task(client.post("/orders/", json={
            "side": "buy", "quantity": 5, "price": 100}))
        await eventually(lambda: sequencer.journal.in_flight == 1)
        assert sequencer.engine.seq("DEFAULT") == acknowledged_seq + 1  # matched, in flight
        read = await client.get(f"/orders/{resting['order_id']}/")
        shown = await read.json()
        assert read.status == 503, shown  # not the unjournaled fill
        await asyncio.sleep(3 * settings.book_interval)
        book = await cached.get(cache.book_key("DEFAULT"))
        assert book is None or json.loads(book)["seq"] <= acknowledged_seq
        assert (await crossing).status == 503
        await asyncio.to_thread(nats.start)
        await eventually(lambda: ready(client), timeout=15)
        healed = await (await client.get(f"/orders/{resting['order_id']}/")).json()
        # The 503 left the outcome open: the buffered append may have landed on reconnect.
        assert (healed["status"], healed["traded_quantity"]) in (("ACTIVE", 0), ("FILLED", 5))
    finally:
        await cached.aclose()
        await client.close()


async def test_a_command_journaled_despite_its_503_reaches_the_market_data(
        settings: Settings, nats: NatsServer) -> None:
    """A 503 whose command the journal did store (only the acknowledgement came too late,
    the server being paused): the rebuild hands its trades to the market data, so the
    trade feed holds every journaled trade, each once, in order."""
    client = await started(settings)
    try:
        sequencer = client.app[api.SEQUENCER]
        handed: list[tuple[int, int]] = []  # (seq, trades)
        market = sequencer.on_journaled

        def journaled(batch: EventBatch, trades: list[TradeView]) -> None:
            handed.append((batch.seq, len(trades)))
            market(batch, trades)

        sequencer.on_journaled = journaled
        await client.post("/orders/", json={"side": "sell", "quantity": 5, "price": 100})
        assert nats.pid is not None
        async with paused(nats.pid):
            late = await client.post("/orders/", json={
                "side": "buy", "quantity": 5, "price": 100, "client_order_id": "late"})
            assert late.status == 503
        await eventually(lambda: ready(client), timeout=15)
        order = sequencer.store.get(sequencer.store.by_key(None, "late") or "")
        assert order is not None  # journaled: the server stored it once it ran again
        assert handed == [(1, 0), (2, 1)]
    finally:
        await client.close()
