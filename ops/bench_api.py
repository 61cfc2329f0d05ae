"""Order API benchmark: POST /orders/ throughput and latency against a trivial aiohttp ceiling.

Starts, all on 127.0.0.1 in a temporary folder: a real nats-server (JetStream) and
redis-server from ops.stack (or uses the ones named by EX_NATS_URL / EX_REDIS_URL when
those are set: the bench's orders are then journaled into that stream, so never while
another svc_orders writes to it), `python -m
svc_orders` on a free port (EX_LOG_FORMAT=json, log in the temporary folder) and, as the
ceiling, a trivial aiohttp app on uvloop (`python -m ops.bench_api --ceiling-server PORT`)
that reads the POST body and answers a small JSON body. For each concurrency it drives
the ceiling and then the order API for a fixed time with crossing orders (sides
alternate buy/sell, random prices 99.90-100.10, random quantities 1-10, so trades
happen) and prints one JSON line: per target requests/s, latency p50/p99/max in ms,
errors (non-2xx answers plus socket errors and timeouts) and the CPU used (in cores) by
the server, NATS, Redis, the load generator and the whole machine, then the ratio
order_api/ceiling. A "machine" figure well above the sum of the others means something
else competed for the cores during that run: its figures are not trustworthy.

The load generator is `wrk` with ops/wrk_orders.lua when `wrk` is on PATH (Debian package
`wrk`), otherwise several Python client processes (aiohttp on uvloop, the connections
split across them); the output says which ("generator"). The first measurement of each
target is preceded by an unreported warm-up. On a small machine wrk, the service and NATS
share the cores: use one wrk thread (the default, --wrk-threads 1) and compare the
generator's CPU with the server's.

    .venv/bin/python -m ops.bench_api                      # c=1,16,64; 5 s each
    .venv/bin/python -m ops.bench_api --seconds 10 --concurrency 64 --generator python
    .venv/bin/python -m ops.bench_api --profile /tmp/orders.txt   # py-spy, see --help

Everything it started is stopped at the end, on errors and on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from array import array
from collections.abc import Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType
from typing import Literal

import aiohttp
import msgspec
import uvloop
from aiohttp import web

from ops import cpu
from ops.stack import HOST, NatsServer, RedisServer, free_port, given_or_started

LUA_SCRIPT = Path(__file__).with_name("wrk_orders.lua")
ORDERS_PATH = "/orders/"
READY_TIMEOUT = 60.0  # seconds for a server to answer /ready/
REQUEST_TIMEOUT = 5.0  # seconds before a request counts as a socket error (both generators)
RUN_GRACE = 30.0  # seconds a run may overrun its duration before it is killed
STOP_TIMEOUT = 15.0  # seconds a process gets to exit after SIGTERM before SIGKILL
PAUSE = 0.5  # seconds between runs, for the journal's last acknowledgements to settle
CEILING_BODY = msgspec.json.encode({"status": "ok", "order_id": "0" * 36})
JSON_HEADERS = {"Content-Type": "application/json"}

Generator = Literal["wrk", "python"]


class Result(msgspec.Struct, kw_only=True):
    """One timed run against one target."""

    requests: int  # answered requests (any status)
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int  # connect/read/write errors and timeouts


class WorkerResult(msgspec.Struct, kw_only=True):
    """What one Python client process measured."""

    latencies_ms: bytes  # array("d")
    seconds: float
    non_2xx: int
    socket_errors: int


class Figures(msgspec.Struct, kw_only=True):
    """One target's figures in the output line."""

    target: str
    requests_per_s: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    errors: int  # non_2xx + socket_errors
    non_2xx: int
    socket_errors: int
    cpu_cores: dict[str, float]  # CPU seconds per second of the run, per process


class Line(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The output for one concurrency."""

    concurrency: int
    generator: Generator
    wrk_threads: int | None = None
    python_processes: int | None = None
    seconds: int
    ceiling: Figures
    order_api: Figures
    ratio: float  # order_api / ceiling requests per second
    profiled: str | None = None


# -- the ceiling: a trivial aiohttp JSON handler --------------------------------------------

def ceiling_server(port: int) -> None:
    """Answer every POST with a small JSON body, on uvloop like svc_orders."""

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=CEILING_BODY, status=201, content_type="application/json")

    async def ready(_: web.Request) -> web.Response:
        return web.Response(body=b'{"ready":true}', content_type="application/json")

    app = web.Application()
    app.router.add_get("/ready/", ready)
    app.router.add_post("/{tail:.*}", answer)
    uvloop.install()
    web.run_app(app, host=HOST, port=port, access_log=None, print=None)


# -- processes ------------------------------------------------------------------------------

def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@contextlib.contextmanager
def server_process(name: str, command: list[str], env: dict[str, str], port: int,
                   log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` until the block ends; yield once GET /ready/ answers 200."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        _wait_ready(name, f"http://{HOST}:{port}/ready/", process, log_path)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(name: str, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with code {process.returncode}; log {log}:\n"
                             + _log_tail(log))
        with (contextlib.suppress(OSError),
              urllib.request.urlopen(url, timeout=1) as response):
            if response.status == 200:
                return
        time.sleep(0.05)
    raise SystemExit(f"{name} did not become ready in {READY_TIMEOUT:.0f}s; log {log}:\n"
                     + _log_tail(log))


@contextlib.contextmanager
def backing_stack(folder: Path) -> Iterator[tuple[str, str, dict[str, int | None]]]:
    """NATS URL, Redis URL and the pids of the servers we started: EX_ variables or private."""
    with contextlib.ExitStack() as stack:
        pids: dict[str, int | None] = {}
        nats_url, pids["nats"] = given_or_started(stack, os.environ.get("EX_NATS_URL"),
                                                  lambda: NatsServer(folder / "nats"))
        redis_url, pids["redis"] = given_or_started(stack, os.environ.get("EX_REDIS_URL"),
                                                    lambda: RedisServer(folder / "redis"))
        yield nats_url, redis_url, pids


# -- load generator: wrk ----------------------------------------------------------------

def run_wrk(url: str, concurrency: int, seconds: int, threads: int) -> Result:
    command = ["wrk", f"-t{min(threads, concurrency)}", f"-c{concurrency}", f"-d{seconds}s",
               "--timeout", f"{REQUEST_TIMEOUT:.0f}s", "-s", str(LUA_SCRIPT), url]
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          timeout=seconds + RUN_GRACE)
    line = next((line for line in done.stdout.splitlines() if line.startswith("BENCH_JSON ")),
                None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed (code {done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    return Result(requests=raw["requests"], seconds=raw["duration_us"] / 1e6,
                  p50_ms=raw["p50_us"] / 1000, p99_ms=raw["p99_us"] / 1000,
                  max_ms=raw["max_us"] / 1000, non_2xx=raw["non_2xx"],
                  socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"])


# -- load generator: Python client processes ------------------------------------------------

def order_body(rng: random.Random, number: int) -> bytes:
    """The n-th order of a client: sides alternate, prices and quantities are random."""
    cents = 9990 + rng.randint(0, 20)
    side = "sell" if number % 2 else "buy"
    return (f'{{"side":"{side}","quantity":{rng.randint(1, 10)},'
            f'"price":"{cents // 100}.{cents % 100:02d}"}}').encode()


def client_worker(url: str, connections: int, seconds: float, seed: int, ready: Queue[int],
                  go: Event, results: Queue[bytes]) -> None:
    """One client process: `connections` request loops for `seconds` once `go` is set."""
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.install()
        outcome = asyncio.run(_client(url, connections, seconds, seed, ready, go))
        results.put(msgspec.msgpack.encode(outcome))


async def _client(url: str, connections: int, seconds: float, seed: int, ready: Queue[int],
                  go: Event) -> WorkerResult:
    rng, numbers = random.Random(seed), itertools.count()
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
                body = order_body(rng, next(numbers))
                sent = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=JSON_HEADERS) as response:
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


def run_python(url: str, concurrency: int, seconds: int, processes: int) -> Result:
    context = multiprocessing.get_context("spawn")
    ready: Queue[int] = context.Queue()
    results: Queue[bytes] = context.Queue()
    go = context.Event()
    count = min(processes, concurrency)
    shares = [concurrency // count + (i < concurrency % count) for i in range(count)]
    workers = [context.Process(target=client_worker, daemon=True,
                               args=(url, share, seconds, random.randrange(2**32), ready, go,
                                     results))
               for share in shares]
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
                  p50_ms=_percentile(latencies, 0.50), p99_ms=_percentile(latencies, 0.99),
                  max_ms=latencies[-1] if latencies else 0.0,
                  non_2xx=sum(part.non_2xx for part in outcome),
                  socket_errors=sum(part.socket_errors for part in outcome))


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- the benchmark ------------------------------------------------------------------------

def smoke_test(url: str) -> None:
    """One order through `url`: it must answer 2xx, or the measurements would be noise."""
    request = urllib.request.Request(url, data=order_body(random.Random(), 0),
                                     headers=JSON_HEADERS, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
            response.read()
    except urllib.error.HTTPError as error:
        raise SystemExit(f"POST {url} answered {error.code}: {error.read()[:500]!r}") from None


def measure(args: argparse.Namespace, generator: Generator, url: str, concurrency: int,
            seconds: int, pids: dict[str, int | None]) -> Figures:
    """One run's figures, with the CPU (in cores) of `pids` and of the load generator."""
    before = {name: cpu.process_seconds(pid) for name, pid in pids.items()}
    generator_before = cpu.waited_children_seconds()
    machine_before = cpu.machine_busy_seconds()
    result = (run_wrk(url, concurrency, seconds, args.wrk_threads) if generator == "wrk"
              else run_python(url, concurrency, seconds, args.processes))
    cores = {name: round((cpu.process_seconds(pid) - before[name]) / result.seconds, 2)
             for name, pid in pids.items() if pid is not None}
    cores["generator"] = round((cpu.waited_children_seconds() - generator_before)
                               / result.seconds, 2)
    # Everything, other processes on the machine included: well above the sum of the
    # others means something else competed for the cores during this run.
    cores["machine"] = round((cpu.machine_busy_seconds() - machine_before) / result.seconds, 2)
    return Figures(
        target=url, requests_per_s=round(result.requests / result.seconds),
        p50_ms=round(result.p50_ms, 2), p99_ms=round(result.p99_ms, 2),
        max_ms=round(result.max_ms, 2), requests=result.requests,
        errors=result.non_2xx + result.socket_errors, non_2xx=result.non_2xx,
        socket_errors=result.socket_errors, cpu_cores=cores)


@contextlib.contextmanager
def py_spy(path: Path | None, pid: int) -> Iterator[None]:
    """Sample `pid` with py-spy into `path` (raw folded stacks) while the block runs."""
    if path is None:
        yield
        return
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    recorder = subprocess.Popen([binary, "record", "-o", str(path), "-f", "raw", "--pid",
                                 str(pid)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        try:
            _, errors = recorder.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            recorder.kill()
            _, errors = recorder.communicate()
        if recorder.returncode != 0 or not path.exists():
            print(f"py-spy failed: {errors.decode(errors='replace')[-500:]}", file=sys.stderr)


def benchmark(args: argparse.Namespace, generator: Generator) -> None:
    with (tempfile.TemporaryDirectory(prefix="bench_api-") as tmp,
          backing_stack(Path(tmp)) as (nats_url, redis_url, backing_pids)):
        folder = Path(tmp)
        orders_port, ceiling_port = free_port(), free_port()
        env = {**os.environ, "EX_NATS_URL": nats_url, "EX_REDIS_URL": redis_url,
               "EX_HOST": HOST, "EX_ORDERS_PORT": str(orders_port), "EX_LOG_FORMAT": "json"}
        with (server_process("svc_orders", [sys.executable, "-m", "svc_orders"], env,
                             orders_port, folder / "svc_orders.log") as service,
              server_process("ceiling", [sys.executable, "-m", "ops.bench_api",
                                         "--ceiling-server", str(ceiling_port)], env,
                             ceiling_port, folder / "ceiling.log") as ceiling):
            targets: dict[str, tuple[str, dict[str, int | None]]] = {
                "ceiling": (f"http://{HOST}:{ceiling_port}{ORDERS_PATH}",
                            {"server": ceiling.pid}),
                "order_api": (f"http://{HOST}:{orders_port}{ORDERS_PATH}",
                              {"server": service.pid, **backing_pids}),
            }
            for url, _ in targets.values():
                smoke_test(url)
            if args.warmup:
                for url, _ in targets.values():
                    measure(args, generator, url, max(args.concurrency), args.warmup, {})
                    time.sleep(PAUSE)
            for concurrency in args.concurrency:
                profiled = args.profile is not None and concurrency == args.concurrency[-1]
                figures: dict[str, Figures] = {}
                for name, (url, pids) in targets.items():
                    with py_spy(args.profile if profiled and name == "order_api" else None,
                                service.pid):
                        figures[name] = measure(args, generator, url, concurrency,
                                                args.seconds, pids)
                    time.sleep(PAUSE)
                line = Line(
                    concurrency=concurrency, generator=generator,
                    wrk_threads=(min(args.wrk_threads, concurrency) if generator == "wrk"
                                 else None),
                    python_processes=(min(args.processes, concurrency)
                                      if generator == "python" else None),
                    seconds=args.seconds, ceiling=figures["ceiling"],
                    order_api=figures["order_api"],
                    ratio=round(figures["order_api"].requests_per_s
                                / max(1, figures["ceiling"].requests_per_s), 3),
                    profiled="order_api run sampled by py-spy (slower)" if profiled else None)
                print(msgspec.json.encode(line).decode(), flush=True)
            if service.poll() is not None:
                raise SystemExit("svc_orders died during the run:\n"
                                 + _log_tail(folder / "svc_orders.log"))


def _terminate(signum: int, _: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the with-blocks, which stop the processes


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="duration of each run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64],
                        help="connections kept busy (one request in flight each)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="unreported seconds per target before the first run (0: none)")
    parser.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto",
                        help="auto: wrk if it is on PATH, else Python client processes")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--processes", type=int, default=min(4, max(2, os.cpu_count() or 2)),
                        help="Python client processes (the Python generator)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy raw (folded) profile of svc_orders during its run at "
                             "the highest concurrency; sampling slows that run")
    parser.add_argument("--ceiling-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ceiling_server is not None:
        ceiling_server(args.ceiling_server)
        return
    if args.seconds < 1 or min(args.concurrency) < 1 or args.wrk_threads < 1:
        parser.error("--seconds, --concurrency and --wrk-threads must be at least 1")
    args.concurrency = sorted(set(args.concurrency))
    generator: Generator = ("wrk" if args.generator == "wrk" or
                            (args.generator == "auto" and shutil.which("wrk")) else "python")
    if generator == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not on PATH (apt-get install wrk)")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        benchmark(args, generator)
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
