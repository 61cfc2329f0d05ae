"""Session-wide real servers (no mocks); each starts only when a test asks for it."""

from collections.abc import Iterator

import pytest

from ops.stack import NatsServer, PostgresServer, RedisServer


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
