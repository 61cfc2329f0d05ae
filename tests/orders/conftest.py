"""svc_orders under test: a fresh JetStream per test, the real app on aiohttp's client."""

from collections.abc import Awaitable, Callable

import pytest

from common.config import Settings
from ops.stack import NatsServer, RedisServer
from svc_orders.app import create_app
from tests.helpers import AppClient

MakeClient = Callable[..., Awaitable[AppClient]]


@pytest.fixture
def nats(private_nats: NatsServer) -> NatsServer:
    return private_nats


@pytest.fixture
def settings(nats: NatsServer, redis_server: RedisServer, projection_dsn: str) -> Settings:
    return Settings(nats_url=nats.url, redis_url=redis_server.url, pg_dsn=projection_dsn,
                    journal_timeout=1.0, snapshot_every=50, book_interval=0.05,
                    max_body_bytes=4096)


@pytest.fixture
async def orders(settings: Settings, aiohttp_client: MakeClient,
                 ) -> AppClient:
    """The app; `settings` comes first so its servers outlive the app's shutdown."""
    return await aiohttp_client(create_app(settings))
