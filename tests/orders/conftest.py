"""svc_orders under test: a fresh JetStream per test, the real app on aiohttp's client,
and svc_trades' read model answering on the same NATS from an empty projection."""

from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from nats import connect

from common.config import Settings
from common.instruments import load_instruments
from ops.stack import NatsServer, RedisServer
from svc_orders.app import create_app
from svc_trades.readmodel import OrderReadModel
from svc_trades.responder import Responder
from tests.helpers import AppClient

MakeClient = Callable[..., Awaitable[AppClient]]


@pytest.fixture
def nats(private_nats: NatsServer) -> NatsServer:
    return private_nats


@pytest.fixture
async def read_model(nats: NatsServer, projection_dsn: str) -> AsyncIterator[None]:
    """svc_trades' answers about finished orders and listings (no projector runs)."""
    nc = await connect(nats.url)
    async with asyncpg.create_pool(projection_dsn, min_size=0, max_size=2) as pool:
        responder = Responder(nc, OrderReadModel(pool, load_instruments(None)))
        await responder.start()
        yield
        await responder.close()
    await nc.close()


@pytest.fixture
def settings(nats: NatsServer, redis_server: RedisServer, read_model: None) -> Settings:
    return Settings(nats_url=nats.url, redis_url=redis_server.url,
                    journal_timeout=1.0, snapshot_every=50, book_interval=0.05,
                    max_body_bytes=4096)


@pytest.fixture
async def orders(settings: Settings, aiohttp_client: MakeClient,
                 ) -> AppClient:
    """The app; `settings` comes first so its servers outlive the app's shutdown."""
    return await aiohttp_client(create_app(settings))
