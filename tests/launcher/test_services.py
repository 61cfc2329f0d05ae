"""./ops/run's launcher as a user runs it: one real process starting real servers and the
three services, in a temporary data folder on free ports.

It must get everything ready, bring back a service killed with SIGKILL (with
EX_ORDERS_STANDBYS, a standby svc_orders too, as a standby), and on Ctrl-C (SIGINT) stop
everything, exit 0 and leave no process behind; killed itself with SIGKILL, it must still
leave no process behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped,unused-ignore]
import pytest
import redis.asyncio as redis

from tests.helpers import eventually
from tests.system import (
    SERVICES,
    Launcher,
    alive,
    descendants,
    ready,
    run_launcher,
    status,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def launcher(tmp_path: Path) -> AsyncIterator[Launcher]:
    async for running in run_launcher(tmp_path):
        yield running


async def test_runs_restarts_a_killed_service_and_stops_cleanly(launcher: Launcher) -> None:
    ports = launcher.ports
    service_ports = [ports["EX_ORDERS_PORT"], ports["EX_TRADES_PORT"], ports["EX_STREAM_PORT"]]

    def said(text: str) -> bool:
        return any(text in line for line in launcher.lines)

    def says(text: str) -> bool:
        """For eventually(): fail at once, not at the timeout, if the launcher is gone."""
        if launcher.proc.returncode is not None:
            pytest.fail(f"launcher exited with {launcher.proc.returncode}:\n"
                        + launcher.output())
        return said(text)

    await eventually(lambda: says("all services ready"), timeout=30)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        for port in service_ports:
            assert await ready(http, port), launcher.output()
        page = f"http://localhost:{ports['EX_STREAM_PORT']}/"
        await eventually(lambda: says(f"page       {page}"), timeout=5)
        async with http.get(page) as response:  # the URL printed is the exchange page
            assert (response.status, response.content_type) == (200, "text/html")

        before = descendants(launcher.proc.pid)
        [first] = launcher.pids_started("svc_orders")
        os.kill(first, signal.SIGKILL)

        await eventually(lambda: len(launcher.pids_started("svc_orders")) == 2, timeout=10)
        await eventually(lambda: says("svc_orders ready again"), timeout=15)
        assert await ready(http, ports["EX_ORDERS_PORT"])
    assert said("svc_orders exited (killed by SIGKILL)")
    second = launcher.pids_started("svc_orders")[1]
    assert second != first
    processes = before | descendants(launcher.proc.pid)
    assert second in processes

    launcher.proc.send_signal(signal.SIGINT)
    code = await asyncio.wait_for(launcher.proc.wait(), 30)
    assert code == 0, launcher.output()
    await eventually(lambda: not [pid for pid in processes if alive(pid)], timeout=5)
    for svc in SERVICES:
        assert said(f"{svc} stopped (exit code 0)"), launcher.output()
    assert launcher.lines[-1].endswith("stopped"), launcher.output()


@pytest.fixture
async def with_standby(tmp_path: Path) -> AsyncIterator[Launcher]:
    async for running in run_launcher(tmp_path, {"EX_ORDERS_STANDBYS": "1"}):
        yield running


async def test_a_killed_standby_comes_back_as_a_standby(with_standby: Launcher) -> None:
    """EX_ORDERS_STANDBYS=1: the standby svc_orders killed with SIGKILL is restarted by
    the launcher under a new pid, which answers /health/, stays unready (/ready/ 503)
    and refuses commands with NOT_LEADER naming the leader, which leads throughout."""
    launcher = with_standby
    await eventually(lambda: launcher.said("all services ready"), timeout=40)
    port = launcher.ports["EX_ORDERS_PORT"]
    names = {f"http://127.0.0.1:{port}": "svc_orders",
             f"http://127.0.0.1:{port + 10}": "svc_orders-1"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        async def roles() -> tuple[str, str]:
            states = {url: await status(http, f"{url}/ready/") for url in names}
            assert sorted(states.values()) == [200, 503], states
            leader = next(url for url, state in states.items() if state == 200)
            return leader, next(url for url in names if url != leader)
        leader, standby = await eventually(roles, timeout=10, interval=0.1)
        name = names[standby]
        [first] = launcher.pids_started(name)
        os.kill(first, signal.SIGKILL)

        await eventually(lambda: len(launcher.pids_started(name)) == 2, timeout=10)
        second = launcher.pids_started(name)[1]
        assert second != first
        assert launcher.said(f"{name} exited (killed by SIGKILL)"), launcher.output()
        assert second in descendants(launcher.proc.pid)
        assert not alive(first)

        async def healthy() -> bool:
            return await status(http, f"{standby}/health/") == 200
        await eventually(healthy, timeout=20, interval=0.1)
        await eventually(lambda: launcher.said(f"{name} ready again"), timeout=5)
        assert launcher.pids_started(name) == [first, second], "restarted more than once"

        assert await status(http, f"{standby}/ready/") == 503
        async with http.post(f"{standby}/orders/", json={
                "side": "buy", "price": "100", "quantity": 1}) as response:
            answer: dict[str, Any] = await response.json()
        assert response.status == 503, answer
        assert answer["error"]["code"] == "NOT_LEADER", answer
        assert answer["error"]["details"] == {"leader": leader}, answer
        assert await status(http, f"{leader}/ready/") == 200
        assert len(launcher.pids_started(names[leader])) == 1, "the leader restarted too"


async def test_a_launcher_killed_by_sigkill_leaves_no_process_behind(
        launcher: Launcher) -> None:
    await eventually(lambda: launcher.said("all services ready"), timeout=30)
    processes = descendants(launcher.proc.pid)
    assert len(processes) >= 6, processes  # three servers (and PostgreSQL's own), services

    launcher.proc.kill()
    await launcher.proc.wait()
    def all_gone() -> bool:
        survivors = [f"{pid} {Path(f'/proc/{pid}/cmdline').read_bytes()!r}"
                     for pid in processes if alive(pid)]
        assert not survivors, survivors
        return True

    try:
        await eventually(all_gone, timeout=20)
    finally:  # the orphans are no longer the launcher's: the fixture cannot find them
        for pid in processes:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


async def test_services_work_as_their_server_users_and_no_password_is_shown(
        launcher: Launcher, tmp_path: Path) -> None:
    """The embedded NATS admits only its users, PostgreSQL and Redis only clients with
    their passwords: every service does its job as its own (orders journaled, projected,
    queried, books asked for), nothing is refused, a client without a password is, and no
    password reaches the terminal or a log."""
    ports = launcher.ports
    await eventually(lambda: launcher.said("all services ready"), timeout=30)
    orders = f"http://127.0.0.1:{ports['EX_ORDERS_PORT']}"
    trades = f"http://127.0.0.1:{ports['EX_TRADES_PORT']}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        for side in ("sell", "buy"):
            async with http.post(f"{orders}/orders/", json={
                    "side": side, "quantity": 1, "price": 10}) as response:
                assert response.status == 201, await response.text()
                order_id = (await response.json())["order_id"]

        async def projected() -> bool:
            async with http.get(f"{trades}/trades/") as response:
                return bool((await response.json())["trades"])

        await eventually(projected, timeout=10)
        async with http.get(f"{orders}/orders/?status=FILLED") as response:  # ex.query
            assert response.status == 200
        async with http.get(f"{orders}/orders/{order_id}/") as response:
            assert response.status == 200
        async with http.get(f"{trades}/orderbook/") as response:
            assert response.status == 200

    # svc_stream runs on the C allocator, which hands departed clients' memory back.
    stream = launcher.pids_started("svc_stream")[-1]
    environ = await asyncio.to_thread(Path(f"/proc/{stream}/environ").read_bytes)
    assert b"PYTHONMALLOC=malloc" in environ.split(b"\0")

    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{ports['EX_PG_PORT']}/postgres")
    anonymous = redis.from_url(f"redis://127.0.0.1:{ports['EX_REDIS_PORT']}/0")
    with pytest.raises(redis.AuthenticationError):
        await anonymous.get("anything")
    await anonymous.aclose()

    run = tmp_path / "run"
    passwords = [path.read_text().strip() for path in (run / "nats" / "users").iterdir()]
    assert len(passwords) == 4
    passwords += [(run / server / "password").read_text().strip()
                  for server in ("postgres", "redis")]
    shown = [launcher.output(lines=len(launcher.lines)),
             *(path.read_text() for path in (run / "logs").iterdir()),
             (run / "nats" / "nats.log").read_text()]
    assert not [text for text in shown for password in passwords if password in text]
    assert "Violation" not in (run / "nats" / "nats.log").read_text()
