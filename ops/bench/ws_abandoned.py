"""Abandoned WebSocket clients: does a new client still get its snapshot at once?

Starts the same stack as `ops.bench.ws` (or uses the running one with --connect), caches
the recent trades of `DEFAULT` in Redis as svc_orders does, then a worker process opens
N connections to `/ws/trades/` that complete the handshake and never read another byte.
While `md.trades.DEFAULT` updates flow at --rate, this process connects a new client
every --every seconds and times its connect + snapshot. Then the worker drops its
connections. Prints one JSON line per N: the probes' latency (p50/p99/max), how many
snapshots came back empty or failed, how many abandoned clients the server dropped, and
svc_stream's resident memory before, with the abandoned clients and after they are gone.

    .venv/bin/python -m ops.bench.ws_abandoned --abandoned 2000 --rate 50 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

import aiohttp
import msgspec
from redis.asyncio import Redis

from common import cache
from common.instruments import DEFAULT_SYMBOL
from common.views import TradeView, json_encoder, timestamp, trade_id
from ops.bench.harness import percentile
from ops.bench.ws import POLL, metric, publish, raise_file_limit, stack
from ops.stack import HOST
from svc_stream import memory

CONNECT_CONCURRENCY = 200  # abandoned connections opened at once: a burst of subscribers
SETTLE = 30.0  # seconds at most for svc_stream to let go of dropped clients
PROBE_TIMEOUT = 30.0  # seconds a probe may wait for its snapshot before it counts as failed


class Abandoned(asyncio.Protocol):
    """Sends the upgrade request, then stops reading for good once the answer is in."""

    def __init__(self, host: str, path: str) -> None:
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        loop = asyncio.get_running_loop()
        self.upgraded: asyncio.Future[bool] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.received = bytearray()  # what it read: the answer, then only if it resumes
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.received += data
        if not self.upgraded.done():
            self.upgraded.set_result(data.startswith(b"HTTP/1.1 101"))
            assert self.transport is not None
            self.transport.pause_reading()  # abandoned: the kernel buffers fill up

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_result(False)
        self.lost.set_result(None)

    async def read_to_end(self) -> bytes:
        """Read again, until the server ends the connection: all it ever sent."""
        assert self.transport is not None
        self.transport.resume_reading()
        await self.lost
        return bytes(self.received)


def abandon(url: str, count: int, opened: Queue[int], drop: Event) -> None:
    asyncio.run(_abandon(url, count, opened, drop))


async def _abandon(url: str, count: int, opened: Queue[int], drop: Event) -> None:
    host, port = HOST, int(url.rsplit(":", 1)[1].split("/", 1)[0])
    path = "/" + url.split("/", 3)[3]
    loop = asyncio.get_running_loop()
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
    clients: list[Abandoned] = []

    async def connect() -> bool:
        async with limit:
            _, client = await loop.create_connection(lambda: Abandoned(f"{host}:{port}", path),
                                                     host, port)
            clients.append(client)
            return await client.upgraded

    upgraded = await asyncio.gather(*(connect() for _ in range(count)))
    opened.put(sum(upgraded))
    await asyncio.to_thread(drop.wait)
    for client in clients:
        if client.transport is not None:
            client.transport.abort()


def _rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


async def _seed_recent_trades(redis_url: str) -> int:
    """Cache the recent trades of DEFAULT (so a snapshot has something); their last seq."""
    redis = Redis.from_url(redis_url, socket_timeout=2)
    try:
        newest = await redis.lrange(cache.trades_key(DEFAULT_SYMBOL), 0, 0)
        first = msgspec.json.decode(newest[0], type=TradeView).seq + 1 if newest else 1
        trades = [TradeView(
            trade_id=trade_id(DEFAULT_SYMBOL, seq), symbol=DEFAULT_SYMBOL, price="100.00",
            quantity=1, bid_order_id="bench-bid", ask_order_id="bench-ask",
            buyer_user_id=None, seller_user_id=None, aggressor_side="buy",
            execution_timestamp=timestamp(time.time_ns()), seq=seq, trade_no=seq)
            for seq in range(first, first + cache.RECENT_TRADES)]
        key = cache.trades_key(DEFAULT_SYMBOL)
        await redis.lpush(key, *(json_encoder.encode(trade) for trade in trades))
        await redis.ltrim(key, 0, cache.RECENT_TRADES - 1)
        return trades[-1].seq
    finally:
        await redis.aclose()


class Probes:
    """New clients, one after another: connect, wait for the snapshot, leave."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies_ms: list[float] = []
        self.empty = self.failed = 0

    async def run(self, every: float, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                began = time.monotonic()
                await self.probe(session)
                await asyncio.sleep(max(0.0, began + every - time.monotonic()))

    async def probe(self, session: aiohttp.ClientSession) -> None:
        began = time.monotonic()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT), session.ws_connect(self.url) as ws:
                snapshot = await ws.receive_json()  # TypeError if a close came instead
            self.latencies_ms.append((time.monotonic() - began) * 1000)
            if not snapshot.get("trades"):
                self.empty += 1
        except (aiohttp.ClientError, TimeoutError, TypeError, ValueError):
            self.failed += 1


async def run(abandoned: int, args: argparse.Namespace, nats_url: str, redis_url: str,
              base: str, pid: int | None) -> dict[str, object]:
    url = base.replace("http", "ws", 1) + f"/ws/trades/?symbol={DEFAULT_SYMBOL}"
    last = await _seed_recent_trades(redis_url)
    rss_before = _rss_mb(pid)
    dropped_before = metric(base, "stream_clients_dropped_total")
    context = multiprocessing.get_context("spawn")
    opened: Queue[int] = context.Queue()
    drop = context.Event()
    worker = context.Process(target=abandon, args=(url, abandoned, opened, drop))
    worker.start()
    try:
        upgraded = await asyncio.to_thread(opened.get, True, 300)
        probes, stop = Probes(url), asyncio.Event()
        prober = asyncio.create_task(probes.run(args.every, stop))
        rss_peak = 0.0
        publishing = asyncio.create_task(publish(nats_url, last + 1,
                                                  int(args.rate * args.seconds), args.rate))
        while not publishing.done():
            rss_peak = max(rss_peak, _rss_mb(pid) or 0.0)
            await asyncio.wait([publishing], timeout=0.5)
        await publishing
        stop.set()
        await prober
        rss_with = _rss_mb(pid)
        clients_with = metric(base, "stream_clients")
    finally:
        drop.set()
        worker.join(30)
        if worker.is_alive():
            worker.kill()
    for _ in range(int(SETTLE / POLL)):  # until svc_stream has let go of every client
        if metric(base, "stream_clients") <= 0:
            break
        await asyncio.sleep(POLL)
    # What a client's teardown frees, and what svc_stream hands back to the system at its
    # next look after departures (svc_stream.memory).
    await asyncio.sleep(memory.EVERY + 2)
    latencies = sorted(probes.latencies_ms)
    return {
        "abandoned": abandoned, "upgraded": upgraded, "rate_per_s": args.rate,
        "seconds": args.seconds, "probes": len(latencies) + probes.failed,
        "connect_snapshot_ms": {"p50": round(percentile(latencies, 0.50), 2),
                                "p99": round(percentile(latencies, 0.99), 2),
                                "max": round(latencies[-1], 2)} if latencies else None,
        "empty_snapshots": probes.empty, "failed_probes": probes.failed,
        "dropped_by_server": int(metric(base, "stream_clients_dropped_total")
                                 - dropped_before),
        "clients_at_end_of_flow": int(clients_with),
        "clients_after": int(metric(base, "stream_clients")),
        "rss_mb": {"before": rss_before, "peak": rss_peak or None, "end_of_flow": rss_with,
                   "after_drop": _rss_mb(pid)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--abandoned", type=int, nargs="+", default=[2000])
    parser.add_argument("--rate", type=float, default=50.0, help="updates per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="publishing time")
    parser.add_argument("--every", type=float, default=0.2,
                        help="seconds between new-client probes")
    parser.add_argument("--connect", action="store_true",
                        help="use the running stack named by the EX_ variables")
    args = parser.parse_args()
    raise_file_limit()
    os.environ.setdefault("EX_LOG_LEVEL", "warning")
    with stack(args.connect) as (nats_url, redis_url, base, pid):
        for abandoned in args.abandoned:
            figures = asyncio.run(run(abandoned, args, nats_url, redis_url, base, pid))
            print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
