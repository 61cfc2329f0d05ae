"""Stopping background tasks for sure, without swallowing what they raised."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog

log = structlog.get_logger(__name__)


async def stop_tasks(tasks: Iterable[asyncio.Task[None]],
                     grace: float = 5.0) -> None:
    """Cancel `tasks` and wait for them to end.

    Cancelling again each round: a client library that swallows one cancellation
    (redis-py's connection clean-up has done so) must not hang a shutdown.
    """
    pending = {task for task in tasks if not task.done()}
    deadline = asyncio.get_running_loop().time() + grace
    while pending and asyncio.get_running_loop().time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.2)
    for task in pending:
        log.error("task did not stop", task=task.get_name())
