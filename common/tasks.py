"""Background tasks that never end silently, and stopping them for sure."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import prometheus_client
import structlog

log = structlog.get_logger(__name__)

RESTARTS = prometheus_client.Counter(
    "background_task_restarts_total",
    "Background tasks that failed or ended and were started again", ["task"])


async def supervise(name: str, run: Callable[[], Coroutine[Any, Any, None]], *,
                    pauses: tuple[float, float] = (0.5, 10.0)) -> None:
    """Run `run()` for as long as the service lives: when it fails, or returns, log it,
    count it, and start it again after a pause that doubles up to `pauses[1]` (and is
    back at `pauses[0]` after a round that lasted longer than the longest pause).

    Each round runs in a task of its own, so a round that leaves its task cancelled
    (on Python 3.11 a failed `asyncio.TaskGroup` leaves `cancelling() == 1` on the task
    that ran it, and every later await raises `CancelledError`) cannot end the
    supervision. Only cancelling the supervisor itself stops it.
    """
    loop = asyncio.get_running_loop()
    pause = pauses[0]
    while True:
        started = loop.time()
        round_ = loop.create_task(run(), name=name)
        try:
            await round_
            how = "ended"
        except asyncio.CancelledError:
            how = "was cancelled"
        except Exception:
            how = "failed"
            if not _stopping():
                log.exception("background task failed", task=name)
        if _stopping():  # cancelled with us, whatever the round made of it
            raise asyncio.CancelledError
        log.error("background task restarting", task=name, how=how, pause=pause)
        RESTARTS.labels(name).inc()
        if loop.time() - started > pauses[1]:
            pause = pauses[0]
        await asyncio.sleep(pause)
        pause = min(pause * 2, pauses[1])


def _stopping() -> bool:
    """Whether the current task was asked to stop (a cancellation is pending on it)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


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
