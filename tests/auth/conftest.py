"""svc_orders and svc_trades with auth on, in this process, on a private JetStream, a
fresh database and a Redis database of their own, with keys for two traders, a viewer of
the first trader's user, an admin and a revoked key. Clients sign with `tests.signing`,
written from the contract, not from the server's code."""

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import pytest
import redis.asyncio
from aiohttp import ClientResponse, ClientSession
from nats.js.kv import KeyValue

from common import keys, subjects
from common.config import Settings
from common.keys import IssuedKey, SecretBox
from ops.stack import NatsServer, PostgresServer, RedisServer
from svc_orders import api as orders_api
from svc_orders.app import create_app as create_orders_app
from svc_trades.app import create_app as create_trades_app
from tests.common.auth import SECRET_KEY
from tests.helpers import AppClient, create_database, eventually
from tests.signing import signed_headers, signing_session
from tests.trades.journal import write_instruments

MakeClient = Callable[..., Awaitable[AppClient]]
REDIS_DB = 13


@dataclass
class Caller:
    """One key as a client holds it, with a signing session per service."""

    key: IssuedKey
    orders: ClientSession
    trades: ClientSession

    @property
    def user_id(self) -> str:
        return self.key.user_id

    def headers(self, method: str, path: str, body: bytes = b"",
                timestamp: str | None = None) -> dict[str, str]:
        return signed_headers(self.key.key_id, self.key.secret, method, path, body, timestamp)


@dataclass
class Exchange:
    """Both services with auth on, and who may call them."""

    settings: Settings
    orders: AppClient
    trades: AppClient
    kv: KeyValue
    alice: Caller  # trader
    bob: Caller  # trader, another user
    carol: Caller  # trader, the counterparty of alice's trades
    alice_viewer: Caller  # viewer of alice's user
    admin: Caller

    async def state(self) -> tuple[Any, ...]:
        """Everything a request could change: the engine's books, svc_orders' order store,
        the journal's length and the projection's rows (once it caught up)."""
        sequencer = self.orders.app[orders_api.SEQUENCER]
        last = (await sequencer.js.stream_info(subjects.STREAM)).state.last_seq
        conn = await asyncpg.connect(self.settings.pg_dsn)
        try:
            async def caught_up() -> bool:
                return bool(await conn.fetchval(
                    "SELECT coalesce(max(stream_seq), 0) >= $1 FROM projection_consumers", last))
            await eventually(caught_up)
            orders = await conn.fetch("SELECT * FROM orders ORDER BY id")
            trades = await conn.fetch("SELECT * FROM trades ORDER BY id")
        finally:
            await conn.close()
        return (sequencer.engine.capture(), msgspec.msgpack.encode(sequencer.store.state()),
                last, [tuple(row) for row in orders], [tuple(row) for row in trades])


def url(client: AppClient) -> str:
    return str(client.make_url("/"))


async def answer(response: ClientResponse) -> tuple[int, Any]:
    async with response:
        return response.status, await response.json()


@pytest.fixture
async def settings(tmp_path: Path, private_nats: NatsServer, postgres_server: PostgresServer,
                   redis_server: RedisServer) -> Settings:
    redis_url = redis_server.url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    async with redis.asyncio.from_url(redis_url) as client:
        await client.flushdb()
    return Settings(auth="on", secret_key=SECRET_KEY, nats_url=private_nats.url,
                    pg_dsn=await create_database(postgres_server), redis_url=redis_url,
                    instruments_file=write_instruments(tmp_path),
                    rate_private="1000/second", rate_public="1000/second",
                    rate_auth_failures="1000/minute")


@pytest.fixture
async def kv(settings: Settings) -> AsyncIterator[KeyValue]:
    connection = await nats.connect(settings.nats_url)
    yield await keys.bucket(connection.jetstream())
    await connection.close()


@pytest.fixture
async def exchange(settings: Settings, kv: KeyValue,
                   aiohttp_client: MakeClient) -> AsyncIterator[Exchange]:
    box = SecretBox(SECRET_KEY)
    alice = await keys.create_key(kv, box, "trader")
    made = {"alice": alice, "bob": await keys.create_key(kv, box, "trader"),
            "carol": await keys.create_key(kv, box, "trader"),
            "alice_viewer": await keys.create_key(kv, box, "viewer", alice.user_id),
            "admin": await keys.create_key(kv, box, "admin")}
    orders = await aiohttp_client(create_orders_app(settings))
    trades = await aiohttp_client(create_trades_app(settings))
    sessions = [(name, signing_session(key.key_id, key.secret, url(orders)),
                 signing_session(key.key_id, key.secret, url(trades)))
                for name, key in made.items()]
    callers = {name: Caller(made[name], o, t) for name, o, t in sessions}
    yield Exchange(settings, orders, trades, kv, **callers)
    for _, o, t in sessions:
        await o.close()
        await t.close()
