"""svc_trades under test: a private JetStream and a fresh database per test.

A private nats-server (~25 ms) means an empty journal every time, whatever other test
modules do with theirs; a fresh database (CREATE DATABASE, then the migrations) means an
empty projection. Redis is the session's server on a database number of its own.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext

from common.config import Settings
from common.journal import ensure_stream
from ops.stack import NatsServer, PostgresServer, RedisServer
from svc_trades.app import create_app
from svc_trades.migrations import migrate
from tests.helpers import AppClient, create_database
from tests.trades.journal import write_instruments

MakeClient = Callable[..., Awaitable[AppClient]]
REDIS_DB = 7
pytest.register_assert_rewrite("tests.trades.ledger")  # its checks fail with their values


def redis_url(server: RedisServer) -> str:
    """The session's Redis, on a database number no other test module uses."""
    return server.url.rsplit("/", 1)[0] + f"/{REDIS_DB}"


@pytest.fixture
async def dsn(postgres_server: PostgresServer) -> str:
    return await create_database(postgres_server)


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(dsn, min_size=1, max_size=6) as pool:
        await migrate(pool)
        yield pool


@pytest.fixture
async def js(nc: Nats) -> JetStreamContext:
    js = nc.jetstream()
    await ensure_stream(js)
    return js


@pytest.fixture
def settings(tmp_path: Path, private_nats: NatsServer, dsn: str,
             redis_server: RedisServer) -> Settings:
    return Settings(nats_url=private_nats.url, pg_dsn=dsn,
                    redis_url=redis_url(redis_server),
                    instruments_file=write_instruments(tmp_path), projection_batch=50)


@pytest.fixture
async def trades(settings: Settings, aiohttp_client: MakeClient) -> AppClient:
    """The app; `settings` comes first so its servers outlive the app's shutdown."""
    return await aiohttp_client(create_app(settings))
