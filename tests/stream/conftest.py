"""svc_stream under test: the real app on aiohttp's test client, real NATS and Redis.

Every test gets fresh instrument symbols, so the session-wide NATS subjects and Redis
keys of one test never reach another.
"""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import nats
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from nats.aio.client import Client as Nats
from pytest_aiohttp import AiohttpClient
from redis.asyncio import Redis

from common.config import Settings
from ops.stack import NatsServer, RedisServer
from svc_stream.app import create_app

Client = TestClient[web.Request, web.Application]
MakeStream = Callable[..., Awaitable[Client]]


@pytest.fixture
def symbols() -> list[str]:
    return [f"T{uuid.uuid4().hex[:8].upper()}" for _ in range(3)]


@pytest.fixture
def settings(tmp_path: Path, symbols: list[str], nats_server: NatsServer,
             redis_server: RedisServer) -> Settings:
    instruments = tmp_path / "instruments.json"
    instruments.write_bytes(msgspec.json.encode([{"symbol": symbol} for symbol in symbols]))
    return Settings(nats_url=nats_server.url, redis_url=redis_server.url,
                    instruments_file=str(instruments))


@pytest.fixture
def make_stream(aiohttp_client: AiohttpClient, settings: Settings) -> MakeStream:
    """Start the service with `settings`, some fields replaced."""
    async def make(**changes: object) -> Client:
        return await aiohttp_client(create_app(msgspec.structs.replace(settings, **changes)))
    return make


@pytest.fixture
async def stream(make_stream: MakeStream) -> Client:
    return await make_stream()


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Nats]:
    """The publisher's side of NATS."""
    connection = await nats.connect(nats_server.url)
    yield connection
    await connection.close()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()
