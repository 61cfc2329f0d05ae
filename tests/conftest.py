"""Session-wide real servers (no mocks); each starts only when a test asks for it."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import nats
import pytest
from nats.aio.client import Client as Nats

from ops.stack import NatsServer, PostgresServer, RedisServer
from svc_trades.migrations import migrate
from tests.helpers import create_database


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A JetStream-enabled nats-server; tests that stop it must start it again."""
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    with server.start():
        yield server


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """PostgreSQL; fsync is off because the tests never survive a machine crash anyway."""
    server = PostgresServer(tmp_path_factory.mktemp("postgres"), settings={"fsync": "off"})
    with server.start():
        yield server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    with server.start():
        yield server


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A JetStream of this test's own: an empty journal, whatever other tests did (~25 ms)."""
    server = NatsServer(tmp_path / "nats")
    with server.start():
        yield server


@pytest.fixture
async def nc(private_nats: NatsServer) -> AsyncIterator[Nats]:
    """A connection to this test's own JetStream."""
    client = await nats.connect(private_nats.url)
    yield client
    await client.close()


@pytest.fixture
async def projection_dsn(postgres_server: PostgresServer) -> str:
    """A fresh database with svc_trades' schema: an empty projection."""
    dsn = await create_database(postgres_server)
    async with asyncpg.create_pool(dsn, min_size=1, max_size=1) as pool:
        await migrate(pool)
    return dsn
