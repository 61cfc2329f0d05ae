"""The Python load generator: client processes (aiohttp on uvloop), the connections split
across them, started together once all are connected."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import random
import time
from array import array
from collections.abc import Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

import aiohttp
import msgspec
import uvloop

from ops.bench.api.load import JSON_HEADERS, REQUEST_TIMEOUT, RUN_GRACE, Result, order_body
from ops.bench.api.signing import signed_lines
from ops.bench.harness import READY_TIMEOUT, STOP_TIMEOUT, percentile


class WorkerResult(msgspec.Struct, kw_only=True):
    """What one Python client process measured."""

    latencies_ms: bytes  # array("d")
    seconds: float
    non_2xx: int
    socket_errors: int


Signed = tuple[str, Path, int, int]  # key id, `presign` file, this worker's part, parts


def client_worker(url: str, connections: int, seconds: float, seed: int, ready: Queue[int],
                  go: Event, results: Queue[bytes], signed: Signed | None,
                  user_id: str | None) -> None:
    """One client process: `connections` request loops for `seconds` once `go` is set;
    with `signed`, it sends its part of the signed orders, each once; else plain orders
    (for `user_id` if given)."""
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.install()
        outcome = asyncio.run(_client(url, connections, seconds, seed, ready, go, signed,
                                      user_id))
        results.put(msgspec.msgpack.encode(outcome))


def _orders(seed: int, signed: Signed | None,
            user_id: str | None) -> Iterator[tuple[dict[str, str], bytes]]:
    """(headers, body) of each request: plain random orders, or the signed ones in turn
    (starting again when they run out: replays, which the server refuses)."""
    if signed is None:
        rng = random.Random(seed)
        for number in itertools.count():
            yield JSON_HEADERS, order_body(rng, number, user_id)
    else:
        key_id, path, part, parts = signed
        common = JSON_HEADERS | {"EX-ACCESS-KEY": key_id}
        for headers, body in itertools.cycle(signed_lines(path, part, parts)):
            yield common | headers, body


async def _client(url: str, connections: int, seconds: float, seed: int, ready: Queue[int],
                  go: Event, signed: Signed | None, user_id: str | None) -> WorkerResult:
    orders = _orders(seed, signed, user_id)
    latencies = array("d")
    non_2xx = socket_errors = 0
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        ready.put(connections)
        if not await asyncio.to_thread(go.wait, READY_TIMEOUT):
            raise SystemExit("no start signal")
        started = time.perf_counter()
        end = started + seconds

        async def loop() -> None:
            nonlocal non_2xx, socket_errors
            while time.perf_counter() < end:
                headers, body = next(orders)
                sent = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, OSError, TimeoutError):
                    socket_errors += 1
                    continue
                latencies.append((time.perf_counter() - sent) * 1000)
                if not 200 <= status < 300:
                    non_2xx += 1

        await asyncio.gather(*(loop() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return WorkerResult(latencies_ms=latencies.tobytes(), seconds=elapsed, non_2xx=non_2xx,
                        socket_errors=socket_errors)


def run_python(url: str, concurrency: int, seconds: int, processes: int,
               signed: tuple[str, Path] | None = None, user_id: str | None = None) -> Result:
    """`signed`: the key id and the file of orders signed with it (`signing.presign`);
    `user_id`: the user of the plain orders."""
    context = multiprocessing.get_context("spawn")
    ready: Queue[int] = context.Queue()
    results: Queue[bytes] = context.Queue()
    go = context.Event()
    count = min(processes, concurrency)
    shares = [concurrency // count + (i < concurrency % count) for i in range(count)]
    workers = [context.Process(target=client_worker, daemon=True,
                               args=(url, share, seconds, random.randrange(2**32), ready, go,
                                     results, None if signed is None
                                     else (*signed, part, count), user_id))
               for part, share in enumerate(shares)]
    outcome: list[WorkerResult] = []
    for process in workers:
        process.start()
    try:
        for _ in workers:
            ready.get(True, READY_TIMEOUT)
        go.set()
        outcome = [msgspec.msgpack.decode(results.get(True, seconds + RUN_GRACE),
                                          type=WorkerResult) for _ in workers]
    finally:
        for process in workers:  # on an error or Ctrl-C, at once; else they are exiting
            process.join(STOP_TIMEOUT if len(outcome) == len(workers) else 0)
            if process.is_alive():
                process.kill()
                process.join()
    latencies = sorted(value for part in outcome for value in array("d", part.latencies_ms))
    return Result(requests=len(latencies), seconds=max(part.seconds for part in outcome),
                  p50_ms=percentile(latencies, 0.50), p99_ms=percentile(latencies, 0.99),
                  max_ms=latencies[-1] if latencies else 0.0,
                  non_2xx=sum(part.non_2xx for part in outcome),
                  socket_errors=sum(part.socket_errors for part in outcome))
