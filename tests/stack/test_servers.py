"""The embedded servers are real and answer their own protocols."""

from pathlib import Path

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import nats
import pytest
import redis.asyncio as redis

from ops.stack import NatsServer, PostgresServer, RedisServer
from tests.helpers import eventually


async def test_nats_jetstream_acks_a_publish(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="SMOKE", subjects=["smoke.>"])
        ack = await js.publish("smoke.hello", b"hi")
        assert (ack.stream, ack.seq) == ("SMOKE", 1)
    finally:
        await nc.close()


async def test_postgres_answers_sql(postgres_server: PostgresServer) -> None:
    conn = await asyncpg.connect(postgres_server.dsn)
    try:
        assert await conn.fetchval("select 1") == 1
        await conn.execute("create table smoke (id int primary key, note text)")
        await conn.execute("insert into smoke values (1, 'hello')")
        assert await conn.fetchval("select note from smoke where id = 1") == "hello"
    finally:
        await conn.close()


async def test_redis_sets_and_gets(redis_server: RedisServer) -> None:
    client = redis.from_url(redis_server.url)
    try:
        await client.set("smoke", "value")
        assert await client.get("smoke") == b"value"
    finally:
        await client.aclose()


async def test_nats_restart_keeps_jetstream_data(tmp_path: Path) -> None:
    """Own server (not the shared one): stop it, start it again on the same port and
    store, and the stream still holds the message published before the outage."""
    server = NatsServer(tmp_path / "nats")
    with server.start():
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(name="DURABLE", subjects=["durable.>"])
        await js.publish("durable.1", b"before outage")
        await nc.close()

        port = server.port
        server.stop()
        assert not server.running
        server.start()
        assert server.port == port

        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            info = await eventually(lambda: js.stream_info("DURABLE"))
            assert info.state.messages == 1
            msg = await js.get_msg("DURABLE", 1)
            assert msg.data == b"before outage"
        finally:
            await nc.close()


async def test_postgres_with_a_password_refuses_clients_without_it(tmp_path: Path) -> None:
    """A cluster first made without a password (an older run folder) gets one, and from
    then on a client must prove it: the DSN without the password is refused."""
    with PostgresServer(tmp_path / "pg").start():
        pass
    server = PostgresServer(tmp_path / "pg", password=True)
    assert server.password
    assert server.password in server.dsn
    with server.start():
        conn = await asyncpg.connect(server.dsn)
        assert await conn.fetchval("select 1") == 1
        await conn.close()
        for dsn in (f"postgresql://postgres@127.0.0.1:{server.port}/postgres",
                    f"postgresql://postgres:wrong@127.0.0.1:{server.port}/postgres"):
            with pytest.raises(asyncpg.InvalidPasswordError):
                await asyncpg.connect(dsn)
        assert server.password not in server.log_path.read_text()
    assert (tmp_path / "pg" / "password").stat().st_mode & 0o077 == 0


async def test_redis_with_a_password_refuses_clients_without_it(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", password=True)
    with server.start():
        client = redis.from_url(server.url)
        await client.set("smoke", "value")
        assert await client.get("smoke") == b"value"
        await client.aclose()
        anonymous = redis.from_url(f"redis://127.0.0.1:{server.port}/0")
        with pytest.raises(redis.AuthenticationError):
            await anonymous.get("smoke")
        await anonymous.aclose()
    assert (tmp_path / "redis" / "password").stat().st_mode & 0o077 == 0


async def test_a_new_postgres_with_a_password_never_trusts_a_client(tmp_path: Path) -> None:
    """A cluster made with a password has it from initdb on; restarts keep it."""
    server = PostgresServer(tmp_path / "pg", password=True)
    for _ in range(2):
        with server.start():
            conn = await asyncpg.connect(server.dsn)
            assert await conn.fetchval("select 1") == 1
            await conn.close()
            with pytest.raises(asyncpg.InvalidPasswordError):
                await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{server.port}/postgres")
    assert not (tmp_path / "pg" / "initdb.pwfile").exists()
    assert server.password is not None
    assert server.password not in server.log_path.read_text()
