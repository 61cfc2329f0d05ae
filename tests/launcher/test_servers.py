"""The launcher's supervisor brings back an embedded server killed with SIGKILL, as it
does a service: on the same port and data folder, so that what was written before the
kill is still there, and with the killed process reaped, not left a zombie."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import asyncpg
import nats
import redis.asyncio as redis

from ops.launcher.children import Server
from ops.launcher.supervisor import Supervisor
from ops.stack import EmbeddedServer, NatsServer, PostgresServer, RedisServer
from tests.helpers import eventually
from tests.system import alive, descendants, run_launcher


@asynccontextmanager
async def supervised(server: EmbeddedServer) -> AsyncIterator[Server]:
    """`server` kept running by the launcher's supervisor while the block runs."""
    child = Server(server)
    supervisor = Supervisor(os.environ, time.monotonic())
    async with supervisor.supervising([child], "servers", ready_timeout=60) as code:
        assert code == 0
        yield child


def reaped(pid: int) -> bool:
    """Gone from /proc: a process that exited but was not waited for stays as a zombie."""
    return not Path(f"/proc/{pid}").exists()


async def kill_and_wait_for_restart(child: Server) -> None:
    """SIGKILL the server; return once another process of it is ready, the killed one
    reaped (gone from /proc) and its own workers gone."""
    killed = child.pid
    assert killed is not None
    workers = descendants(killed)
    os.kill(killed, signal.SIGKILL)
    await eventually(lambda: child.ready and child.pid not in (None, killed), timeout=30)
    await eventually(partial(reaped, killed), timeout=5)
    await eventually(lambda: not any(alive(pid) for pid in workers), timeout=10)


async def test_a_killed_nats_server_comes_back_with_its_streams(tmp_path: Path) -> None:
    async with supervised(NatsServer(tmp_path / "nats")) as child:
        nc = await nats.connect(child.server.address, allow_reconnect=False)
        js = nc.jetstream()
        await js.add_stream(name="KEPT", subjects=["kept.>"])
        await js.publish("kept.1", b"before the kill")
        await nc.close()

        await kill_and_wait_for_restart(child)

        nc = await nats.connect(child.server.address)
        try:
            msg = await nc.jetstream().get_msg("KEPT", 1)
            assert msg.data == b"before the kill"
        finally:
            await nc.close()


async def test_a_killed_postgres_comes_back_with_its_tables(tmp_path: Path) -> None:
    async with supervised(PostgresServer(tmp_path / "postgres")) as child:
        conn = await asyncpg.connect(child.server.address)
        await conn.execute("CREATE TABLE kept (note text)")
        await conn.execute("INSERT INTO kept VALUES ('before the kill')")
        await conn.close()

        await kill_and_wait_for_restart(child)

        conn = await asyncpg.connect(child.server.address)
        try:
            assert await conn.fetchval("SELECT note FROM kept") == "before the kill"
        finally:
            await conn.close()


async def test_a_killed_redis_comes_back_on_its_port(tmp_path: Path) -> None:
    """Redis holds caches only and persists nothing (SPEC): it must answer again on the
    same address, where the services find it and refill their caches."""
    async with supervised(RedisServer(tmp_path / "redis")) as child:
        client = redis.from_url(child.server.address)
        try:
            await client.set("cached", "before the kill")

            await kill_and_wait_for_restart(child)

            await client.set("cached", "after the kill")
            assert await client.get("cached") == b"after the kill"
        finally:
            await client.aclose()


async def test_the_launcher_brings_back_each_killed_server_on_its_address(
        tmp_path: Path) -> None:
    """The same through ./ops/run's launcher, each server killed in turn while the services
    run: it is started again on the same address, and the killed process is reaped."""
    async for launcher in run_launcher(tmp_path):
        await eventually(partial(launcher.said, "all services ready"), timeout=40)
        for name in ("nats", "postgres", "redis"):
            [killed] = launcher.pids_started(name)
            os.kill(killed, signal.SIGKILL)
            await eventually(partial(launcher.said, f"{name} ready again"), timeout=30)
            assert launcher.said(f"{name} exited (killed by SIGKILL)")
            started = [line.split(") ", 1)[1] for line in launcher.lines
                       if f"{name} started (pid " in line]
            [first, again] = started
            assert again == first  # address and data folder
            await eventually(partial(reaped, killed), timeout=5)
