"""svc_orders asks svc_trades for the orders it does not hold and for listings: without
an answer it says 503 at once or at `EX_QUERY_TIMEOUT`, never a 500, never a hang.

(Answers that work, byte for byte like svc_trades' own, are in tests/trades/test_api.py.)
"""

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp import ClientResponse
from nats import connect
from nats.aio.msg import Msg

from common import subjects
from common.config import Settings
from common.instruments import load_instruments
from ops.stack import NatsServer, PostgresServer, RedisServer
from svc_orders.app import create_app
from svc_trades.readmodel import OrderReadModel
from svc_trades.responder import Responder
from tests.helpers import AppClient, create_database, routed
from tests.orders.conftest import MakeClient

UNKNOWN = "/orders/00000000-0000-4000-8000-0000000000ff/"
HANG_GUARD = 10.0  # seconds: far above any timeout here, only so a hang fails the test


@pytest.fixture
def alone(nats: NatsServer, redis_server: RedisServer) -> Settings:
    """svc_orders' settings with no svc_trades answering on its NATS."""
    return Settings(nats_url=nats.url, redis_url=redis_server.url, query_timeout=0.3)


async def assert_unavailable(response: ClientResponse, reason: str) -> None:
    body = await response.json()
    assert response.status == 503, body
    assert body["error"]["code"] == "UNAVAILABLE"
    assert body["error"]["details"]["reason"] == reason


async def ask_both(client: AppClient, reason: str) -> None:
    async with asyncio.timeout(HANG_GUARD):
        await assert_unavailable(await client.get(UNKNOWN), reason)
        await assert_unavailable(await client.get("/orders/", params={"status": "FILLED"}),
                                 reason)
        await assert_unavailable(await client.delete(UNKNOWN), reason)


async def test_without_svc_trades_history_answers_503_at_once(
        alone: Settings, aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(create_app(alone))
    await ask_both(client, "NoRespondersError")
    placed = await client.post("/orders/", json={"side": "buy", "quantity": 1, "price": 1})
    assert placed.status == 201  # order entry never needs svc_trades
    order = await placed.json()
    assert (await client.get(f"/orders/{order['order_id']}/")).status == 200  # in memory
    bad = await client.get("/orders/", params={"side": "up"})
    assert bad.status == 400  # checked before anything is asked


async def test_a_silent_svc_trades_answers_503_at_the_timeout(
        alone: Settings, nats: NatsServer, aiohttp_client: MakeClient) -> None:
    silent = await connect(nats.url)

    async def ignore(_: Msg) -> None:
        pass
    for subject in (subjects.ORDER_QUERY, subjects.ORDERS_QUERY):
        await silent.subscribe(subject, queue=subjects.QUERY_QUEUE, cb=ignore)
    for subject in (subjects.ORDER_QUERY, subjects.ORDERS_QUERY):
        await routed(silent, subject, b"")
    try:
        client = await aiohttp_client(create_app(alone))
        await ask_both(client, "TimeoutError")
    finally:
        await silent.close()


@pytest.fixture
async def unmigrated(nats: NatsServer, postgres_server: PostgresServer,
                     ) -> AsyncIterator[None]:
    """svc_trades' read model on a database it has not migrated yet."""
    nc = await connect(nats.url)
    dsn = await create_database(postgres_server)
    async with asyncpg.create_pool(dsn, min_size=0, max_size=2) as pool:
        responder = Responder(nc, OrderReadModel(pool, load_instruments(None)))
        await responder.start()
        yield
        await responder.close()
    await nc.close()


async def test_before_svc_trades_migrated_history_answers_503_not_500(
        alone: Settings, unmigrated: None, aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(create_app(alone))
    await ask_both(client, "UndefinedTableError")


def test_svc_orders_never_loads_the_database_driver() -> None:
    """svc_orders holds no SQL: the projection is svc_trades' alone."""
    code = ("import sys, svc_orders.__main__; print(sorted(m for m in sys.modules"
            " if m.startswith(('asyncpg', 'svc_trades'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
