"""WebSocket fan-out benchmark: N clients on /ws/trades/ while trades flow at a steady rate.

Starts a real nats-server and redis-server (ops.stack) and `python -m svc_stream` in a
temporary folder, all on 127.0.0.1 (with --connect it uses the running stack named by the
EX_ variables instead: EX_NATS_URL, EX_REDIS_URL, EX_HOST, EX_STREAM_PORT). Client worker
processes connect N clients that read as fast as they can; this process then publishes
`md.trades.DEFAULT` updates exactly as svc_orders does, one trade each, stamped with its
publish time in `execution_timestamp`. Prints one JSON line per client count: delivery
rate, latency from publish to client receipt (p50/p99/max), and dropped clients.

    .venv/bin/python -m ops.bench.ws --clients 100 1000 --rate 50 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from array import array
from collections.abc import Iterator
from datetime import datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

import aiohttp
import msgspec
import nats
from redis.asyncio import Redis

from common import cache, subjects
from common.config import load_settings
from common.instruments import DEFAULT_SYMBOL
from common.views import TradesMessage, TradeView, json_encoder, timestamp, trade_id
from ops.bench import cpu
from ops.bench.harness import percentile, service_process
from ops.stack import HOST, NatsServer, RedisServer, free_port

CONNECT_CONCURRENCY = 50  # connections opened at once per worker (the listen backlog)
GRACE = 5.0  # seconds after the last publish before a missing message counts as lost
POLL = 0.5  # seconds between checks whether to stop waiting for the clients


class _Trade(msgspec.Struct):
    execution_timestamp: datetime


class _Update(msgspec.Struct):
    """What a client reads of each message: enough to time it and to know the last."""

    type: str
    seq: int
    trades: list[_Trade]


class WorkerResult(msgspec.Struct):
    received: int
    dropped: int  # closed by the server with 1013
    closed: int  # closed for any other reason, or never got the last message
    last_receipt: float
    latencies_ms: bytes  # array("d")


_update = msgspec.json.Decoder(_Update)


@contextlib.contextmanager
def stack(connect: bool) -> Iterator[tuple[str, str, str, int | None]]:
    """NATS URL, Redis URL, stream base URL, and the stream service's pid if we started it."""
    if connect:
        settings = load_settings()
        yield (settings.nats_url, settings.redis_url,
               f"http://{settings.host}:{settings.stream_port}", None)
        return
    with (tempfile.TemporaryDirectory(prefix="bench_ws-") as folder,
          NatsServer(Path(folder) / "nats") as nats_server,
          RedisServer(Path(folder) / "redis") as redis_server):
        port = free_port()
        env = {**os.environ, "EX_NATS_URL": nats_server.url, "EX_REDIS_URL": redis_server.url,
               "EX_HOST": HOST, "EX_STREAM_PORT": str(port), "EX_LOG_FORMAT": "json"}
        with service_process("svc_stream", [sys.executable, "-m", "svc_stream"], env, port,
                             Path(folder) / "stream.log") as service:
            yield nats_server.url, redis_server.url, f"http://{HOST}:{port}", service.pid


def metric(base: str, name: str) -> float:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


# -- client worker processes ------------------------------------------------------------

class Tally:
    """What one worker's clients measured."""

    def __init__(self) -> None:
        self.latencies_ms = array("d")
        self.last_receipt = 0.0


class Probe(asyncio.Protocol):
    """A minimal WebSocket client: the handshake, then the server's frames parsed in bulk.

    aiohttp's client costs a future and a task switch per message; with 1,000 clients on
    a small machine the harness, not the server, would then set the latency. This one
    reads every frame as it arrives, times each chunk once and answers pings.
    """

    def __init__(self, host: str, path: str, last_seq: int, tally: Tally) -> None:
        loop = asyncio.get_running_loop()
        self.host, self.path, self.last_seq, self.tally = host, path, last_seq, tally
        self.live: asyncio.Future[None] = loop.create_future()  # the snapshot arrived
        self.finished: asyncio.Future[str] = loop.create_future()  # done, dropped, closed
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
                        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                        .encode())

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.live.set_exception(ConnectionError(bytes(buffer[:end]).decode()))
                return
            del buffer[:end + 4]
            self.upgraded = True
        position = 0
        while len(buffer) - position >= 2:
            opcode, length, head = buffer[position] & 0x0F, buffer[position + 1] & 0x7F, 2
            if length >= 126:
                head = 4 if length == 126 else 10
                if len(buffer) - position < head:
                    break
                length = int.from_bytes(buffer[position + 2:position + head], "big")
            if len(buffer) - position < head + length:
                break
            self.frame(opcode, bytes(buffer[position + head:position + head + length]), now)
            position += head + length
        del buffer[:position]

    def frame(self, opcode: int, payload: bytes, now: float) -> None:
        if opcode == aiohttp.WSMsgType.TEXT:
            if not self.live.done():
                self.live.set_result(None)
                return
            update = _update.decode(payload)
            for trade in update.trades:
                self.tally.latencies_ms.append(
                    (now - trade.execution_timestamp.timestamp()) * 1000)
            self.tally.last_receipt = now
            if update.seq >= self.last_seq:
                self.finish("done")
        elif opcode == aiohttp.WSMsgType.PING:
            self.send(aiohttp.WSMsgType.PONG, payload)
        elif opcode == aiohttp.WSMsgType.CLOSE:
            code = int.from_bytes(payload[:2], "big")
            self.finish("dropped" if code == aiohttp.WSCloseCode.TRY_AGAIN_LATER else "closed")

    def send(self, opcode: int, payload: bytes) -> None:
        """A client frame, masked as RFC 6455 requires (control frames only: < 126 bytes)."""
        assert self.transport is not None
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def finish(self, outcome: str) -> None:
        if not self.finished.done():
            self.finished.set_result(outcome)
            self.send(aiohttp.WSMsgType.CLOSE, aiohttp.WSCloseCode.OK.to_bytes(2, "big"))
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            self.finished.set_result("closed")


def worker(url: str, clients: int, last_seq: int, ready: Queue[int],
           results: Queue[bytes], stop: Event) -> None:
    results.put(msgspec.msgpack.encode(asyncio.run(_worker(url, clients, last_seq, ready,
                                                           stop))))


async def _worker(url: str, clients: int, last_seq: int, ready: Queue[int],
                  stop: Event) -> WorkerResult:
    target = urllib.parse.urlsplit(url)
    host, port = target.hostname or HOST, target.port or 80
    tally, probes = Tally(), []
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
    loop = asyncio.get_running_loop()

    async def connect() -> None:
        async with limit:
            _, probe = await loop.create_connection(
                lambda: Probe(f"{host}:{port}", f"{target.path}?{target.query}", last_seq,
                              tally), host, port)
            await probe.live
            probes.append(probe)

    await asyncio.gather(*(connect() for _ in range(clients)))
    ready.put(clients)
    pending = {probe.finished for probe in probes}
    while pending and not stop.is_set():
        _, pending = await asyncio.wait(pending, timeout=POLL)
    outcomes = [probe.finished.result() if probe.finished.done() else "silent"
                for probe in probes]
    return WorkerResult(
        received=len(tally.latencies_ms), dropped=outcomes.count("dropped"),
        closed=outcomes.count("closed") + outcomes.count("silent"),
        last_receipt=tally.last_receipt, latencies_ms=tally.latencies_ms.tobytes())


# -- the publisher (this process) -----------------------------------------------------------

async def _next_seq(redis_url: str) -> int:
    """A seq past any cached trade, so no client's snapshot hides the bench's updates."""
    redis = Redis.from_url(redis_url, socket_timeout=2)
    try:
        newest = await redis.lrange(cache.trades_key(DEFAULT_SYMBOL), 0, 0)
        return msgspec.json.decode(newest[0], type=TradeView).seq + 1 if newest else 1
    finally:
        await redis.aclose()


def _message(seq: int) -> bytes:
    now = time.time_ns()
    trade = TradeView(
        trade_id=trade_id(DEFAULT_SYMBOL, seq), symbol=DEFAULT_SYMBOL, price="100.00",
        quantity=1, bid_order_id="bench-bid", ask_order_id="bench-ask", buyer_user_id=None,
        seller_user_id=None, aggressor_side="buy", execution_timestamp=timestamp(now),
        seq=seq, trade_no=seq)
    return json_encoder.encode(TradesMessage(type="update", symbol=DEFAULT_SYMBOL, seq=seq,
                                             trades=[trade]))


async def publish(nats_url: str, first: int, count: int, rate: float) -> float:
    """Publish `count` updates at `rate` per second; return when publishing began."""
    nc = await nats.connect(nats_url)
    loop = asyncio.get_running_loop()
    began, start = time.time(), loop.time()
    try:
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
            await nc.publish(subjects.trades(DEFAULT_SYMBOL), _message(first + i))
            await nc.flush()
    finally:
        await nc.close()
    return began


async def run(clients: int, args: argparse.Namespace, nats_url: str, redis_url: str,
              base: str, pid: int | None) -> dict[str, object]:
    context = multiprocessing.get_context("spawn")
    ready: Queue[int] = context.Queue()
    results: Queue[bytes] = context.Queue()
    stop = context.Event()
    first = await _next_seq(redis_url)
    count = int(args.rate * args.seconds)
    url = base.replace("http", "ws", 1) + f"/ws/trades/?symbol={DEFAULT_SYMBOL}"
    shares = [clients // args.workers + (i < clients % args.workers)
              for i in range(args.workers)]
    workers = [context.Process(target=worker, args=(url, share, first + count - 1, ready,
                                                    results, stop))
               for share in shares if share]
    connecting = time.monotonic()
    for process in workers:
        process.start()
    try:
        for _ in workers:
            await asyncio.to_thread(ready.get, True, 120)
        connect_s = time.monotonic() - connecting
        dropped_before = metric(base, "stream_clients_dropped_total")
        cpu_before = cpu.process_seconds(pid)
        began = await publish(nats_url, first, count, args.rate)
        published_s = time.time() - began
        server_cpu = cpu.process_seconds(pid) - cpu_before
        asyncio.get_running_loop().call_later(GRACE, stop.set)
        outcome = [msgspec.msgpack.decode(await asyncio.to_thread(results.get, True, 120),
                                          type=WorkerResult) for _ in workers]
    finally:
        stop.set()
        for process in workers:
            process.join(10)
            if process.is_alive():
                process.kill()
    latencies = sorted(value for result in outcome
                       for value in array("d", result.latencies_ms))
    received = len(latencies)
    span = max(result.last_receipt for result in outcome) - began
    return {
        "clients": clients, "rate_per_s": args.rate, "published": count,
        "connect_s": round(connect_s, 2), "publish_s": round(published_s, 2),
        "expected": count * clients, "delivered": received,
        "delivery_ratio": round(received / (count * clients), 6),
        "deliveries_per_s": round(received / span) if span > 0 else 0,
        "latency_ms": {"p50": round(percentile(latencies, 0.50), 2),
                       "p99": round(percentile(latencies, 0.99), 2),
                       "max": round(latencies[-1], 2)} if latencies else None,
        "dropped_clients": sum(result.dropped for result in outcome),
        "dropped_by_server": int(metric(base, "stream_clients_dropped_total")
                                 - dropped_before),
        "other_closed": sum(result.closed for result in outcome),
        "server_cpu_share": round(server_cpu / published_s, 2) if pid is not None else None,
    }


def raise_file_limit() -> None:
    """1,000 clients need more descriptors than a default soft limit of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--rate", type=float, default=50.0, help="updates per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="publishing time")
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument("--connect", action="store_true",
                        help="use the running stack named by the EX_ variables")
    args = parser.parse_args()
    raise_file_limit()
    with stack(args.connect) as (nats_url, redis_url, base, pid):
        for clients in args.clients:
            figures = asyncio.run(run(clients, args, nats_url, redis_url, base, pid))
            print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
