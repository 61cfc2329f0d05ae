"""Restart benchmark: how long svc_orders takes from process start to ready with a large
book, and how long a snapshot of that book holds the event loop.

On a real nats-server (and Redis) from ops.stack, in a temporary folder, it journals
`--resting` non-crossing limit orders (many price levels, a few users, each order with a
client order id) through the real engine, writes the service snapshot of that state with
the service's own snapshot path (`Sequencer._snapshot`, timing the longest stall of the
event loop meanwhile), then journals `--tail` more commands: placements that rest or
trade, cancels and modifies. Then it starts `python -m svc_orders` `--runs` times and
times each from process start to `/ready/` answering 200. Prints one JSON line for the
snapshot and one per start, with the fields of svc_orders' "recovered" log line.

Last, the leader's snapshot with a standby (`--no-standby` leaves it out): the bench
holds the lease as the leader would, and recovers the leader's state in this process;
`python -m svc_orders` starts as a standby, recovers the same state, and writes the
snapshot due after the tail. Once it is stored, the leader's own due snapshot
(`Sequencer._snapshot`) runs, timed as above: it finds the standby's and forks for none.
One more JSON line: the standby's seconds from start to stored snapshot, the leader's
longest stall, and whether it forked.

    .venv/bin/python -m ops.bench.restart
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import structlog
import uvloop

from common.instruments import DEFAULT_INSTRUMENT, DEFAULT_SYMBOL
from common.messages import (
    CancelOrder,
    Command,
    EventBatch,
    ModifyOrder,
    OrderType,
    PlaceOrder,
    Side,
    TimeInForce,
)
from ops.bench.cpu import process_seconds, tree_seconds
from ops.bench.harness import service_process
from ops.bench.journaling import GROUP, fresh_stream, journal_payloads, publish
from ops.stack import HOST, NatsServer, RedisServer, free_port
from svc_orders import snapshots
from svc_orders.journaling import Journal, stream_last_seq
from svc_orders.leadership import Lease
from svc_orders.matching import Exchange
from svc_orders.sequencer import Sequencer
from svc_orders.store import OrderStore

INSTRUMENTS = {DEFAULT_SYMBOL: DEFAULT_INSTRUMENT}
USERS = [f"00000000-0000-4000-8000-{n:012d}" for n in range(8)]
MID = 1_000_000  # price units (10,000.00): bids below, asks at or above
LEVELS = 2_000  # price levels per side of the resting book
ACK_TIMEOUT = 30.0  # seconds (the benchmark's journal only carries the snapshot's position)
LEASE_TTL = 1.5  # seconds: svc_orders' default EX_LEASE_TTL
STANDBY_TIMEOUT = 300.0  # seconds for the standby to store its snapshot
POLL = 0.1  # seconds between looks at the lease and the stored snapshot


class Book:
    """The deterministic commands and the engine and order store they build."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.engine = Exchange(INSTRUMENTS)
        self.store = OrderStore()
        self.placed: list[str] = []  # every order id placed (some no longer live)
        self.count = 0
        self.clock = 1_800_000_000_000_000_000  # ns; one microsecond per command

    def journaled(self, commands: Iterator[Command], count: int) -> list[EventBatch]:
        """Submit commands until `count` of them were journaled; their batches."""
        batches: list[EventBatch] = []
        while len(batches) < count:
            batch = self.engine.submit(next(commands))
            if batch.seq:
                self.store.apply(batch)
                batches.append(batch)
        return batches

    def place(self, side: Side, price: int, **kwargs: Any) -> PlaceOrder:
        self.count += 1
        self.clock += 1_000
        order_id = f"00000000-0000-4000-9000-{self.count:012d}"
        self.placed.append(order_id)
        return PlaceOrder(order_id=order_id, symbol=DEFAULT_SYMBOL, side=side,
                          quantity=self.rng.randint(1, 100), price=price,
                          user_id=self.rng.choice(USERS), client_order_id=f"c{self.count}",
                          timestamp=self.clock, **kwargs)

    def resting(self) -> Iterator[Command]:
        """Limit orders that never cross: bids below MID, asks from MID up."""
        while True:
            side = self.rng.choice((Side.BUY, Side.SELL))
            depth = self.rng.randrange(LEVELS)
            yield self.place(side, MID - 1 - depth if side is Side.BUY else MID + depth)

    def mixed(self) -> Iterator[Command]:
        """What a busy book sees: placements that rest (45%) or take (20%), cancels (20%)
        and modifies (15%) of live orders."""
        rng = self.rng
        while True:
            roll = rng.random()
            side = rng.choice((Side.BUY, Side.SELL))
            sign = 1 if side is Side.BUY else -1
            if roll < 0.45:
                yield self.place(side, MID - sign * (1 + rng.randrange(LEVELS)))
            elif roll < 0.65:
                tif = rng.choice((TimeInForce.GTC, TimeInForce.IOC))
                yield self.place(side, MID + sign * rng.randrange(LEVELS // 20),
                                 time_in_force=tif, type=OrderType.LIMIT)
            else:
                self.clock += 1_000
                order_id = self.live_order()
                if roll < 0.85:
                    yield CancelOrder(order_id=order_id, timestamp=self.clock)
                elif rng.random() < 0.5:
                    yield ModifyOrder(order_id=order_id, quantity=rng.randint(1, 100),
                                      timestamp=self.clock)
                else:
                    order = self.engine.orders[order_id]
                    assert order.price is not None
                    yield ModifyOrder(order_id=order_id, timestamp=self.clock,
                                      price=order.price + rng.choice((-1, 1)))

    def live_order(self) -> str:
        """A random order that rests now (placed ids no longer live are dropped)."""
        placed, live = self.placed, self.engine.orders
        while True:
            index = self.rng.randrange(len(placed))
            if placed[index] in live:
                return placed[index]
            placed[index] = placed[-1]
            placed.pop()


async def stall_monitor(longest: dict[str, float]) -> None:
    """Keep the longest time the event loop went without running us: in wall-clock time,
    and in CPU time of this thread (which leaves out other processes' time slices on a
    busy machine)."""
    while True:
        wall, cpu = time.perf_counter(), time.thread_time()
        await asyncio.sleep(0)
        longest["wall"] = max(longest["wall"], time.perf_counter() - wall)
        longest["cpu"] = max(longest["cpu"], time.thread_time() - cpu)


async def timed_snapshot(sequencer: Sequencer) -> dict[str, float]:
    """`sequencer`'s due snapshot, with the longest stall of the event loop meanwhile."""
    longest = {"wall": 0.0, "cpu": 0.0}
    monitor = asyncio.create_task(stall_monitor(longest))
    await asyncio.sleep(0.1)  # the monitor's first pass
    longest.update(wall=0.0, cpu=0.0)
    started = time.perf_counter()
    await sequencer._snapshot()
    seconds = time.perf_counter() - started
    monitor.cancel()
    return {"longest_loop_stall_ms": round(1000 * longest["wall"], 1),
            "longest_loop_stall_cpu_ms": round(1000 * longest["cpu"], 1),
            "seconds": round(seconds, 3)}


async def prepare(nats_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Journal the resting book, snapshot it as svc_orders does, journal the tail."""
    book = Book(args.seed)
    commands = book.resting()
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream(publish_async_max_pending=20_000)
        await fresh_stream(js)
        await publish(js, journal_payloads(book.journaled(commands, args.resting), GROUP))
        sequencer = Sequencer(js, Journal(nc, ACK_TIMEOUT), await snapshots.bucket(js),
                              INSTRUMENTS, snapshot_every=args.tail + 1)
        sequencer.engine, sequencer.store = book.engine, book.store
        journaled = await stream_last_seq(js)
        sequencer.journal.restart_chain(journaled)
        stall = await timed_snapshot(sequencer)
        written = await snapshots.load(nc, sequencer.bucket)
        if written is None or written.stream_seq != journaled:
            raise SystemExit("the snapshot was not written (see the warning above)")
        figures = {"resting_orders": len(book.engine.orders),
                   "live_orders": len(book.store.live), "keys": len(book.store.keys),
                   **stall}
        await publish(js, journal_payloads(book.journaled(book.mixed(), args.tail), GROUP))
    finally:
        await nc.close()
    return {"snapshot": figures, "resting_after_tail": len(book.engine.orders)}


def recovered_line(log: Path) -> dict[str, Any]:
    """The fields of the last "recovered" line svc_orders logged (JSON)."""
    found: dict[str, Any] = {}
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == "recovered":
                found = record
    return {key: value for key, value in found.items()
            if key not in ("event", "level", "timestamp", "logger")}


def service_env(nats_url: str, redis_url: str, port: int) -> dict[str, str]:
    return {**os.environ, "EX_NATS_URL": nats_url, "EX_REDIS_URL": redis_url,
            "EX_HOST": HOST, "EX_ORDERS_PORT": str(port), "EX_LOG_FORMAT": "json"}


def start(folder: Path, nats: NatsServer, redis_url: str, run: int) -> dict[str, Any]:
    """Start svc_orders once: seconds from process start to /ready/ 200, and the CPU
    seconds it and nats-server spent meanwhile (the machine may be busy with others)."""
    port = free_port()
    env = service_env(nats.url, redis_url, port)
    log = folder / f"svc_orders_{run}.log"
    nats_cpu = tree_seconds(nats.pid)
    started = time.perf_counter()
    with service_process("svc_orders", [sys.executable, "-m", "svc_orders"], env, port,
                         log) as service:
        ready = time.perf_counter() - started
        cpu = {"svc_orders": round(process_seconds(service.pid), 2),
               "nats_server": round(tree_seconds(nats.pid) - nats_cpu, 2)}
    recovered = recovered_line(log)
    return {"run": run, "ready_seconds": round(ready, 3),
            "outside_recovery_seconds": round(ready - recovered.get("seconds", 0.0), 3),
            "cpu_seconds": cpu, "load_average": round(os.getloadavg()[0], 1),
            "recovered": recovered}


async def with_standby(folder: Path, nats_url: str, redis_url: str) -> dict[str, Any]:
    """The leader's due snapshot once a standby process has stored one."""
    nc = await nats.connect(nats_url)
    standby: asyncio.subprocess.Process | None = None
    try:
        js = nc.jetstream()
        lease = Lease(js, "http://bench-leader", LEASE_TTL, 1)
        for _ in range(round(3 * LEASE_TTL / POLL)):  # the last start's lease may linger
            if await lease.acquire():
                break
            await asyncio.sleep(POLL)
        else:
            raise SystemExit("another instance holds the lease")
        renewing = asyncio.create_task(renew_forever(lease))
        leader = Sequencer(js, Journal(nc, ACK_TIMEOUT), await snapshots.bucket(js),
                           INSTRUMENTS, snapshot_every=1)
        await leader.recover()
        own = await snapshots.stored_seq(leader.bucket)
        end = await stream_last_seq(js)
        started = time.perf_counter()
        log = folder / "svc_orders_standby.log"
        with log.open("wb") as out:
            standby = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "svc_orders", stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, env=service_env(nats_url, redis_url, free_port()))
        while await snapshots.stored_seq(leader.bucket) != end:
            if (standby.returncode is not None
                    or time.perf_counter() - started > STANDBY_TIMEOUT):
                raise SystemExit(f"the standby stored no snapshot; see {log}")
            await asyncio.sleep(POLL)
        stored = time.perf_counter() - started
        stall = await timed_snapshot(leader)
        renewing.cancel()
        await lease.release()
    finally:
        if standby is not None and standby.returncode is None:
            standby.terminate()
            await standby.wait()
        await nc.close()
    return {"with_standby": {"standby_stored_seconds": round(stored, 1),
                             "snapshot_before": own, "standby_snapshot": end,
                             # it found the standby's, or else wrote its own
                             "leader_forked": not leader._standby_snapshots, **stall}}


async def renew_forever(lease: Lease) -> None:
    while True:
        await asyncio.sleep(lease.ttl / 3)
        if not await lease.renew():
            raise SystemExit("the bench lost the lease to the standby")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resting", type=int, default=100_000,
                        help="resting orders in the snapshot")
    parser.add_argument("--tail", type=int, default=50_000,
                        help="journaled commands after the snapshot")
    parser.add_argument("--runs", type=int, default=3, help="starts of svc_orders")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-standby", action="store_true",
                        help="leave out the leader's snapshot with a standby")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory(prefix="bench_restart_") as tmp, \
            NatsServer(Path(tmp) / "nats") as nats_server, \
            RedisServer(Path(tmp) / "redis") as redis_server:
        folder = Path(tmp)
        prepared = uvloop.run(prepare(nats_server.url, args))
        print(json.dumps({"resting": args.resting, "tail": args.tail, **prepared}),
              flush=True)
        for run in range(1, args.runs + 1):
            print(json.dumps(start(folder, nats_server, redis_server.url, run)),
                  flush=True)
        if not args.no_standby:
            print(json.dumps(uvloop.run(with_standby(folder, nats_server.url,
                                                     redis_server.url))), flush=True)


if __name__ == "__main__":
    main()
