"""Background tasks: a round that dies in any way is started again; stopping stops it."""

import asyncio

import pytest

from common.tasks import RESTARTS, stop_tasks, supervise

PAUSES = (0.001, 0.002)


def _restarts(name: str) -> float:
    return RESTARTS.labels(name)._value.get()  # type: ignore[no-any-return]


async def _failed_task_group() -> None:
    """What the projector's session did: a task group whose child fails."""
    async def fail() -> None:
        raise ConnectionError("nats went away")

    async def wait() -> None:
        await asyncio.sleep(10)

    async def run_group() -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(fail())
            tasks.create_task(wait())

    with pytest.raises(ExceptionGroup):
        await run_group()
    # On 3.11 the task that ran the group is left with cancelling() == 1.


@pytest.mark.parametrize("failure", ["raises", "returns", "task group"])
async def test_a_round_that_dies_is_started_again(failure: str) -> None:
    name = f"test-{failure}"
    rounds = 0
    again = asyncio.Event()

    async def run() -> None:
        nonlocal rounds
        task = asyncio.current_task()
        if task is not None and task.cancelling():  # as a careful loop checks each round
            raise asyncio.CancelledError
        rounds += 1
        if rounds == 3:
            again.set()
            await asyncio.sleep(10)
        if failure == "raises":
            raise RuntimeError("boom")
        if failure == "task group":
            await _failed_task_group()

    before = _restarts(name)
    supervisor = asyncio.get_running_loop().create_task(supervise(name, run, pauses=PAUSES))
    await asyncio.wait_for(again.wait(), 5)
    assert _restarts(name) - before == 2
    await stop_tasks([supervisor])
    assert supervisor.cancelled()


async def test_cancelling_the_supervisor_cancels_its_round() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    before = _restarts("test-stop")
    supervisor = asyncio.get_running_loop().create_task(
        supervise("test-stop", run, pauses=PAUSES))
    await asyncio.wait_for(started.wait(), 5)
    await stop_tasks([supervisor])
    assert cancelled.is_set()
    assert supervisor.cancelled()
    assert _restarts("test-stop") == before


async def test_a_round_that_swallows_its_cancellation_still_stops() -> None:
    """Libraries have swallowed a cancellation (asyncio.wait_for on 3.11 among them): the
    supervisor must stop anyway, not take the round's normal end for a failure."""
    started = asyncio.Event()

    async def run() -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return  # swallowed

    supervisor = asyncio.get_running_loop().create_task(
        supervise("test-swallow", run, pauses=PAUSES))
    await asyncio.wait_for(started.wait(), 5)
    before = _restarts("test-swallow")
    supervisor.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(supervisor, 1)
    assert _restarts("test-swallow") == before
