"""The svc_orders leader failing under a bounded crossing load at 64 connections, on the
whole system as `EX_ORDERS_STANDBYS=1 ./ops/run` starts it: the leader killed with
SIGKILL, or paused (SIGSTOP) for 10 s and then resumed; and, on a three-node NATS
cluster (`EX_NATS_CLUSTER=3`), the NATS node that leads the journal's stream killed.

The load sends each order to whichever instance answers /ready/, as a load balancer
would. Afterwards an instance must lead again (the time is printed: the standby, or
after a kill possibly the killed one, restarted by the launcher, if it wins the lease), the services
must agree with every answer the load got (`tests.faults.consistency`), and the deposed
leader must have acknowledged nothing once it lost the lease: orders sent to it straight
after it resumes are all refused and none is in the journal. The unavailability window
(first failed order to the last) is printed.

Each instance's /metrics says what it is: the leader's role gauge is "leader", it took
over at least once and renewed its lease; the other's role is "standby", and its
replication lag gauge, the journal messages it had yet to apply at its last look, comes
down to 0 once the load has stopped.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from common import subjects
from tests.faults.consistency import Endpoints, check_consistency, get
from tests.faults.load import Load
from tests.faults.tape import Tape
from tests.helpers import eventually
from tests.standby.instances import Instances
from tests.system import Launcher, paused, run_launcher

pytestmark = [pytest.mark.integration, pytest.mark.faults]

PAUSE = 10.0  # seconds the leader stays stopped
TAKEN_OVER_WITHIN = 10.0  # a generous bound; the takeover time itself is printed
CLIENTS = 64
BEFORE = 300  # orders acknowledged before the fault
AFTER = 150  # orders acknowledged after it
PROBES = 16  # orders sent to a resumed deposed leader


@pytest.fixture(params=["leader-killed", "leader-paused", "nats-node-killed"])
async def fault(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def system(tmp_path: Path, fault: str) -> AsyncIterator[Launcher]:
    extra = {"EX_ORDERS_STANDBYS": "1"}
    if fault == "nats-node-killed":
        extra["EX_NATS_CLUSTER"] = "3"
    async for running in run_launcher(tmp_path, extra):
        await eventually(partial(running.said, "all services ready"), timeout=40)
        yield running


async def _journal_leader(system: Launcher) -> str:
    """The NATS node that leads the journal's stream (its Raft group)."""
    nc = await nats.connect(system.admin_nats_url)
    try:
        info = await nc.jetstream().stream_info(subjects.STREAM)
    finally:
        await nc.close()
    assert info.cluster is not None, info
    assert info.cluster.leader is not None, info
    return info.cluster.leader


async def _probe_deposed(http: aiohttp.ClientSession, url: str, name: str) -> list[str]:
    """Orders sent at once to `url`: each must be refused; their client order ids."""
    async def place(n: int) -> str:
        client_order_id = f"{name}-deposed-{n}"
        body = {"side": "buy" if n % 2 else "sell", "price": "100.00", "quantity": 1,
                "client_order_id": client_order_id}
        try:
            async with http.post(f"{url}/orders/", json=body,
                                 timeout=aiohttp.ClientTimeout(total=8)) as response:
                assert response.status == 503, (response.status, await response.text())
        except (aiohttp.ClientError, TimeoutError):
            pass
        return client_order_id
    return await asyncio.gather(*(place(n) for n in range(PROBES)))


async def _standing_by(http: aiohttp.ClientSession, url: str, leader: str) -> bool:
    """`url` refuses commands with NOT_LEADER, naming `leader`."""
    async with http.post(f"{url}/orders/", json={"side": "buy", "price": "1.00",
                                                 "quantity": 1}) as response:
        answer: dict[str, Any] = await response.json()
    assert response.status == 503, answer
    assert answer["error"]["code"] == "NOT_LEADER", answer
    assert answer["error"]["details"]["leader"] == leader, answer
    return True


async def test_a_standby_takes_over_and_the_system_agrees_with_every_answer(
        fault: str, system: Launcher) -> None:
    ports = system.ports
    first = f"http://127.0.0.1:{ports['EX_ORDERS_PORT']}"
    second = f"http://127.0.0.1:{ports['EX_ORDERS_PORT'] + 10}"
    names = {first: "svc_orders", second: "svc_orders-1"}
    async with (aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
                Instances(http, [first, second]) as instances):
        await eventually(lambda: instances.leader is not None, timeout=10)
        tape = Tape(http, f"ws://127.0.0.1:{ports['EX_STREAM_PORT']}/ws/trades/")
        await tape.start()
        load = Load(http, instances.orders(), name=fault, clients=CLIENTS, limit=20_000,
                    target=instances.orders)
        load.start()
        deposed: list[str] = []
        try:
            await eventually(lambda: len(load.acknowledged) >= BEFORE, timeout=30)
            old = instances.leader
            assert old is not None
            pid = system.pids_started(names[old])[-1]
            began = time.monotonic()
            if fault == "leader-killed":
                os.kill(pid, signal.SIGKILL)
            elif fault == "leader-paused":
                async with paused(pid):
                    await eventually(lambda: instances.led_by_other_since(old) or 0.0,
                                     timeout=TAKEN_OVER_WITHIN)
                    await asyncio.sleep(PAUSE - (time.monotonic() - began))
                deposed = await _probe_deposed(http, old, fault)
                await eventually(partial(_standing_by, http, old, _other(names, old)),
                                 timeout=5)
            else:  # the node that leads the journal's stream: the hardest to lose
                os.kill(system.pids_started(await _journal_leader(system))[-1],
                        signal.SIGKILL)
            taken = began
            if fault != "nats-node-killed":
                taken = await eventually(lambda: instances.led_again_since(began) or 0.0,
                                         timeout=TAKEN_OVER_WITHIN)
                print(f"\n{fault}: {instances.leader} led {taken - began:.2f} s after the fault")
            resumed = time.monotonic()
            await eventually(lambda: len(load.acknowledged_since(resumed)) >= AFTER,
                             timeout=30)
        finally:
            await load.stop()
        leader = instances.leader
        assert leader is not None
        at = Endpoints(http, orders=leader, trades=f"http://127.0.0.1:{ports['EX_TRADES_PORT']}",
                       nats=system.admin_nats_url)
        try:
            summary = await check_consistency(at, load, tape)
        finally:
            await tape.stop()
        for client_order_id in deposed:  # refused, and not in the journal either
            listing = await get(http, f"{leader}/orders/?client_order_id={client_order_id}")
            assert listing["orders"] == [], listing
        if fault == "leader-paused":  # once another leads, the old one answers nothing
            late = [cid for cid, url in load.acknowledged_by.items()
                    if url == old and load.acknowledged_at[cid] > taken]
            assert not late, f"the deposed leader acknowledged {len(late)} orders"
        assert instances.both_ready == 0, "two instances answered ready at once"
        await _check_ha_metrics(http, leader, _other(names, leader))
        print(f"{fault}: {summary}; orders failed for {load.unavailable():.2f} s "
              f"({len(load.failed)} open outcomes)")


async def _metrics(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """svc_orders' HA samples on `url`'s /metrics, by name (and role label)."""
    try:
        async with http.get(f"{url}/metrics") as response:
            assert response.status == 200, response.status
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as error:  # not up yet (restarted)
        raise AssertionError(f"{url}/metrics: {error!r}") from error
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in HA_METRICS:
                role = sample.labels.get("role")
                samples[sample.name if role is None else f"{sample.name}:{role}"] = sample.value
    return samples


async def _check_ha_metrics(http: aiohttp.ClientSession, leader: str, standby: str) -> None:
    """Role, lease renewals and takeovers on the leader; role and a lag that has come
    down to 0 (the load has stopped) on the standby."""
    async def led() -> bool:
        seen = await _metrics(http, leader)
        assert seen.keys() == HA_METRICS_SHOWN, seen
        assert (seen["orders_role:leader"], seen["orders_role:standby"]) == (1, 0), seen
        assert seen["orders_takeovers_total"] >= 1, seen
        assert seen["orders_lease_renewals_total"] > 0, seen
        return True

    async def followed() -> bool:
        seen = await _metrics(http, standby)
        assert seen.keys() == HA_METRICS_SHOWN, seen
        assert (seen["orders_role:leader"], seen["orders_role:standby"]) == (0, 1), seen
        assert seen["orders_standby_lag_messages"] == 0, seen
        return True
    await eventually(led, timeout=5, interval=0.1)
    await eventually(followed, timeout=10, interval=0.1)


HA_METRICS = {"orders_role", "orders_lease_renewals_total", "orders_lease_failures_total",
              "orders_takeovers_total", "orders_standby_lag_messages"}
HA_METRICS_SHOWN = {"orders_role:leader", "orders_role:standby", "orders_lease_renewals_total",
                    "orders_lease_failures_total", "orders_takeovers_total",
                    "orders_standby_lag_messages"}


def _other(names: dict[str, str], url: str) -> str:
    """The other instance's URL."""
    return next(other for other in names if other != url)
