"""Versioned schema migrations: `NNNN_name.sql` files applied once each, in order.

`migrate` is idempotent and safe to run from several processes at once: it takes a
transaction-scoped advisory lock, records every applied version in `schema_migrations`,
and applies the pending files and their records in one transaction, so a crash leaves
the schema as it was.
"""

from __future__ import annotations

import re
from importlib import resources

import asyncpg
import structlog

log = structlog.get_logger(__name__)

LOCK_KEY = "svc_trades.migrations"
_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")


def versions() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration file, oldest first."""
    found = []
    for entry in resources.files(__name__).iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text()))
    found.sort()
    numbers = [version for version, _, _ in found]
    if len(set(numbers)) != len(numbers):
        raise RuntimeError(f"duplicate migration versions in {numbers}")
    return found


async def migrate(pool: asyncpg.Pool) -> list[int]:
    """Apply the pending migrations; return the versions applied now."""
    applied_now: list[int] = []
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", LOCK_KEY)
        await conn.execute("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())""")
        done = {row["version"] for row in await conn.fetch(
            "SELECT version FROM schema_migrations")}
        for version, name, sql in versions():
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                               version, name)
            applied_now.append(version)
            log.info("migration applied", version=version, name=name)
    return applied_now
