"""svc_orders under test: a fresh JetStream per test, the real app on aiohttp's client."""

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from common.config import Settings
from ops.stack import NatsServer, RedisServer
from svc_orders.app import create_app
from tests.helpers import AppClient

MakeClient = Callable[..., Awaitable[AppClient]]


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A private JetStream: every test starts from an empty journal (~25 ms)."""
    server = NatsServer(tmp_path / "nats")
    with server.start():
        yield server


@pytest.fixture
def settings(nats: NatsServer, redis_server: RedisServer) -> Settings:
    return Settings(nats_url=nats.url, redis_url=redis_server.url, journal_timeout=1.0,
                    snapshot_every=50, book_interval=0.05, max_body_bytes=4096)


@pytest.fixture
async def orders(settings: Settings, aiohttp_client: MakeClient,
                 ) -> AppClient:
    """The app; `settings` comes first so its servers outlive the app's shutdown."""
    return await aiohttp_client(create_app(settings))
