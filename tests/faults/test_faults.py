"""One fault per server under a bounded crossing load, on the whole system as `./ops/run`
starts it: nats-server paused 10 s (SIGSTOP), then nats-server, PostgreSQL and
redis-server each killed with SIGKILL (the launcher restarts it).

After each, the system must heal within 30 s of the fault's end (the time is printed):
every service ready, and an order acknowledged after the fault projected. Once the load
stops and the projection has caught up, the services must agree with every answer the
load got (`tests.faults.consistency`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path

import aiohttp
import pytest

from tests.faults.consistency import Endpoints, check_consistency, projected_seq
from tests.faults.load import Load
from tests.faults.tape import Tape
from tests.helpers import eventually
from tests.system import Launcher, paused, ready, run_launcher

pytestmark = [pytest.mark.integration, pytest.mark.faults]

PAUSE = 10.0  # seconds nats-server stays stopped
HEALED_WITHIN = 30.0  # seconds after the fault's end by which the system has healed
BEFORE = 300  # orders acknowledged before the fault
AFTER = 150  # orders acknowledged once healed
SERVICE_PORTS = ("EX_ORDERS_PORT", "EX_TRADES_PORT", "EX_STREAM_PORT")


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[Launcher]:
    async for running in run_launcher(tmp_path):
        await eventually(partial(running.said, "all services ready"), timeout=40)
        yield running


def _server_pid(system: Launcher, name: str) -> int:
    return system.pids_started(name)[-1]


async def pause_nats(system: Launcher) -> None:
    async with paused(_server_pid(system, "nats")):
        await asyncio.sleep(PAUSE)


async def kill(name: str, system: Launcher) -> None:
    os.kill(_server_pid(system, name), signal.SIGKILL)


FAULTS: dict[str, Callable[[Launcher], Awaitable[None]]] = {
    "nats-paused": pause_nats,
    "nats-killed": partial(kill, "nats"),
    "postgres-killed": partial(kill, "postgres"),
    "redis-killed": partial(kill, "redis"),
}


async def _healed(at: Endpoints, system: Launcher, load: Load, since: float) -> bool:
    """Every service ready, and an order acknowledged since `since` projected."""
    states = await asyncio.gather(*(ready(at.http, system.ports[port])
                                    for port in SERVICE_PORTS))
    later = load.acknowledged_since(since)
    if not all(states) or not later:
        return False
    return await projected_seq(at) >= max(int(order["seq"]) for order in later)


@pytest.mark.parametrize("fault", FAULTS)
async def test_after_the_fault_the_system_heals_and_agrees_with_every_answer(
        fault: str, system: Launcher) -> None:
    ports = system.ports
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        at = Endpoints(http, orders=f"http://127.0.0.1:{ports['EX_ORDERS_PORT']}",
                       trades=f"http://127.0.0.1:{ports['EX_TRADES_PORT']}",
                       nats=system.admin_nats_url)
        tape = Tape(http, f"ws://127.0.0.1:{ports['EX_STREAM_PORT']}/ws/trades/")
        await tape.start()
        load = Load(http, f"{at.orders}/orders/", name=fault)
        load.start()
        try:
            await eventually(lambda: len(load.acknowledged) >= BEFORE, timeout=20)
            await FAULTS[fault](system)
            ended = time.monotonic()
            try:
                await eventually(partial(_healed, at, system, load, ended),
                                 timeout=HEALED_WITHIN, interval=0.1)
            except AssertionError:
                pytest.fail(f"not healed {HEALED_WITHIN:g} s after the fault:\n"
                            + system.output())
            healed = time.monotonic()
            print(f"\n{fault}: healed {healed - ended:.1f} s after the fault ended")
            print("\n".join(line for line in system.lines if "ready again" in line))
            await eventually(lambda: len(load.acknowledged_since(healed)) >= AFTER,
                             timeout=15)
        finally:
            await load.stop()
        try:
            summary = await check_consistency(at, load, tape)
        finally:
            await tape.stop()
        print(f"{fault}: {summary}")
        assert await _healed(at, system, load, ended), system.output()
