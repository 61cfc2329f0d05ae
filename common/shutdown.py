"""Bounded shutdown of the connections every service holds.

A service told to stop (SIGTERM from ./ops/run, compose or an orchestrator) must exit
even when NATS or PostgreSQL went away at the same moment, as they do when the whole
system stops at once: each close gets a few seconds, then the connection is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import structlog
from nats.aio.client import Client as Nats

if TYPE_CHECKING:  # only svc_trades holds a pool; the others never load asyncpg
    import asyncpg

log = structlog.get_logger(__name__)

SHUTDOWN_SECONDS = 5.0  # per connection


async def close_nats(nc: Nats) -> None:
    """Drain (what is buffered still goes out), else close without it."""
    try:
        async with asyncio.timeout(SHUTDOWN_SECONDS):
            await nc.drain()
    except Exception as error:  # NATS gone or too slow: nothing more to save
        log.warning("NATS drain failed at shutdown", error=repr(error))
    with contextlib.suppress(Exception):
        async with asyncio.timeout(SHUTDOWN_SECONDS):
            await nc.close()


async def close_pool(pool: asyncpg.Pool) -> None:
    """Close gracefully (waits for connections in use), else terminate them."""
    try:
        async with asyncio.timeout(SHUTDOWN_SECONDS):
            await pool.close()
    except Exception as error:
        log.warning("PostgreSQL pool did not close in time, terminating",
                    error=repr(error))
        pool.terminate()
