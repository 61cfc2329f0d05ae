"""Failover benchmark: how long a hot standby takes to lead after the leader's kill -9,
and what the order API sustains on one nats-server versus a three-node JetStream
cluster (three replicas of every stream), in the same run.

For each NATS setup it starts Redis and two `python -m svc_orders` (a leader and a
standby) in a temporary folder, measures the order API's throughput at the leader
(`ops.bench.api`'s Python load generator: `--concurrency` connections for `--seconds`),
then, under a light load of orders sent to whichever instance is ready, kills the
leader `--kills` times with SIGKILL: each takeover is timed from the kill to the other
instance answering /ready/ 200, and the killed one is started again as the standby.
Prints one JSON line per setup.

    .venv/bin/python -m ops.bench.takeover [--kills 10] [--seconds 10] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import aiohttp

from ops.bench.api.figures import measure
from ops.bench.harness import ready, stop_process, wait_until
from ops.stack import HOST, NatsServer, RedisServer, cluster_url, free_port, nats_cluster

POLL = 0.01  # seconds between readiness probes while a takeover is timed
TRICKLE = 0.005  # seconds between two orders of the light load during the kills


class Instance:
    """One svc_orders process, restartable on its port."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env = {**env, "EX_ORDERS_PORT": str(port)}
        self.port, self.log = port, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "svc_orders"],
                                            env=self.env, stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@contextlib.contextmanager
def nats_setup(folder: Path, nodes: int) -> Iterator[str]:
    """EX_NATS_URL of one nats-server or of a cluster of `nodes`, running in the block."""
    with ExitStack() as stack:
        if nodes == 1:
            yield stack.enter_context(NatsServer(folder / "nats").start()).url
            return
        cluster = nats_cluster(folder / "nats", [free_port() for _ in range(nodes)],
                               [free_port() for _ in range(nodes)])
        for node in cluster:
            stack.callback(node.stop)
        with ThreadPoolExecutor(nodes) as pool:  # a node is ready once a majority is up
            list(pool.map(lambda node: node.start(), cluster))
        yield cluster_url(cluster)


async def _trickle(ports: list[int], stop: asyncio.Event) -> int:
    """Orders to whichever instance takes them, until `stop`; how many were taken."""
    taken = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        number = 0
        while not stop.is_set():
            number += 1
            port = ports[number % len(ports)]
            body = {"side": "buy" if number % 2 else "sell", "quantity": 1,
                    "price": f"{100 + number % 7 / 100:.2f}"}
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.post(f"http://{HOST}:{port}/orders/", json=body) as answer:
                    taken += answer.status == 201
            await asyncio.sleep(TRICKLE)
    return taken


def _kills(instances: list[Instance], kills: int) -> list[float]:
    """Kill the leader `kills` times; each takeover's seconds."""
    times: list[float] = []
    for _ in range(kills):
        leader = next(i for i in instances if ready(i.port))
        standby = next(i for i in instances if i is not leader)
        time.sleep(1.0)  # the standby follows a moving journal meanwhile
        killed = time.monotonic()
        leader.kill()
        wait_until("taken over", partial(ready, standby.port), POLL)
        times.append(time.monotonic() - killed)
        leader.start()
        wait_until("up", partial(ready, leader.port, "/health/"), POLL)
    return times


async def _under_load(instances: list[Instance], kills: int) -> list[float]:
    stop = asyncio.Event()
    load = asyncio.create_task(_trickle([i.port for i in instances], stop))
    try:
        return await asyncio.to_thread(_kills, instances, kills)
    finally:
        stop.set()
        await load


def run_setup(nodes: int, args: argparse.Namespace, folder: Path) -> dict[str, object]:
    with nats_setup(folder, nodes) as nats_url, RedisServer(folder / "redis").start() as redis:
        env = {**os.environ, "EX_NATS_URL": nats_url, "EX_REDIS_URL": redis.url,
               "EX_NATS_REPLICAS": str(nodes), "EX_LOG_FORMAT": "json"}
        instances = [Instance(env, free_port(), folder / f"svc_orders-{n}.log")
                     for n in range(2)]
        try:
            for instance in instances:
                instance.start()
            wait_until("led", lambda: any(ready(i.port) for i in instances), POLL)
            wait_until("up", lambda: all(ready(i.port, "/health/") for i in instances), POLL)
            leader = next(i for i in instances if ready(i.port))
            assert leader.process is not None
            figures = measure("python", f"http://{HOST}:{leader.port}/orders/",
                              args.concurrency, args.seconds,
                              {"server": leader.process.pid}, wrk_threads=1, processes=1)
            takeovers = asyncio.run(_under_load(instances, args.kills))
        finally:
            for instance in instances:
                instance.stop()
    return {"nats": "one server" if nodes == 1 else f"{nodes}-node cluster, {nodes} replicas",
            "orders_per_s": figures.requests_per_s, "p50_ms": figures.p50_ms,
            "p99_ms": figures.p99_ms, "errors": figures.errors,
            "takeover_s": {"min": round(min(takeovers), 2),
                           "median": round(statistics.median(takeovers), 2),
                           "max": round(max(takeovers), 2)},
            "kills": len(takeovers)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.takeover",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=10, help="throughput run length")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    for nodes in (1, 3):
        with tempfile.TemporaryDirectory(prefix="bench_takeover-") as folder:
            print(json.dumps(run_setup(nodes, args, Path(folder))), flush=True)


if __name__ == "__main__":
    main()
