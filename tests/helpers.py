"""Test helpers: poll for a condition instead of sleeping a guessed amount."""

# ASYNC109 prefers asyncio.timeout(), but eventually() owns its deadline so that it can
# report the last failed check instead of a bare CancelledError.
# ruff: noqa: ASYNC109

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast, overload
from uuid import uuid4

import asyncpg
import nats
from aiohttp import web
from aiohttp.test_utils import TestClient
from nats.aio.client import Client as Nats
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from ops.stack import PostgresServer

T = TypeVar("T")


@overload
async def eventually(
    check: Callable[[], Awaitable[T]], timeout: float = ..., interval: float = ...
) -> T: ...
@overload
async def eventually(check: Callable[[], T], timeout: float = ..., interval: float = ...) -> T: ...
async def eventually(
    check: Callable[[], T | Awaitable[T]],
    timeout: float = 5.0,
    interval: float = 0.02,
) -> T:
    """Call `check` (sync or async) until it returns a truthy value, and return it.

    An AssertionError from `check` counts as "not yet", so assert-style checks work
    too (end them with `return True`). On timeout, raise AssertionError carrying the
    last result or the last assertion failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        cause: AssertionError | None = None
        try:
            outcome = check()
            value = cast(T, await outcome if inspect.isawaitable(outcome) else outcome)
            if value:
                return value
            last = f"last result: {value!r}"
        except AssertionError as exc:
            last, cause = f"last failure: {exc}", exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s; {last}") from cause
        await asyncio.sleep(interval)


async def routed(near: Nats, subject: str, probe: bytes) -> None:
    """Return once a request on `subject` from a connection of its own, to the server
    `near` is connected to, reaches a subscriber (answered or not): for a stand-in
    responder to call before the service under test asks it anything.

    nats-server 2.15.1 can route another connection's message past a subscription it
    has already confirmed (subscribe, then flush): here 12 of 1,500 requests sent right
    after were answered "no responders", none once a millisecond had passed.
    """
    assert near.connected_url is not None, "connected"
    connection = await nats.connect(near.connected_url.geturl())

    async def reached() -> bool:
        try:
            await connection.request(subject, probe, timeout=0.2)
        except NoRespondersError:
            return False
        except NatsTimeout:  # a subscriber that does not answer this probe
            pass
        return True
    try:
        await eventually(reached)
    finally:
        await connection.close()


AppClient = TestClient[web.Request, web.Application]
"""aiohttp's test client of a whole application."""


async def create_database(server: PostgresServer) -> str:
    """A new, empty database on the session's PostgreSQL; returns its DSN."""
    name = f"test_{uuid4().hex[:12]}"
    conn = await asyncpg.connect(server.dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return server.dsn_for(name)
