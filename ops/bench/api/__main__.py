"""Order API benchmark: POST /orders/ throughput and latency against a trivial aiohttp ceiling.

Starts, all on 127.0.0.1 in a temporary folder: a real nats-server (JetStream) and
redis-server from ops.stack (or uses the ones named by EX_NATS_URL / EX_REDIS_URL when
those are set: the bench's orders are then journaled into that stream, so never while
another svc_orders writes to it), `python -m
svc_orders` on a free port (EX_LOG_FORMAT=json, log in the temporary folder) and, as the
ceiling, a trivial aiohttp app on uvloop (`python -m ops.bench.api.ceiling PORT`)
that reads the POST body and answers a small JSON body; and, unless --no-auth, a second
`python -m svc_orders` with EX_AUTH=on on a nats-server of its own, whose every order is
signed with a trader key and unique as a real client sends it (ops/bench/api/signing.py;
its rate limits are counted in the same Redis, set too high to refuse anything). The
plain orders name the key's user in their body (`user_id`), so that both order APIs
carry the same user through every order, trade, journal message and answer and the
difference is the cost of auth alone (--plain-without-user: plain orders with no user,
the comparison of the first figures in the README). For
each concurrency it drives the ceiling, the order API and the order API with auth for
a fixed time with crossing orders (sides
alternate buy/sell, random prices 99.90-100.10, random quantities 1-10, so trades
happen) and prints one JSON line: per target requests/s, latency p50/p99/max in ms,
errors (non-2xx answers plus socket errors and timeouts) and the CPU used (in cores) by
the server, NATS, Redis, the load generator and the whole machine, then the ratio
order_api/ceiling, `auth_cost`, 1 - order_api_auth/order_api requests per second, and
`auth_cpu_cost`, the same from the server's CPU per request (`server_cpu_us`), with
--rounds N the medians of the rounds' own comparisons (`auth_costs`: each round's), and
`commands_per_message`: how many commands svc_orders' journal messages held (group
commit). With --baseline, svc_orders from another checkout runs in the same rounds, on
a nats-server of its own (`order_api_baseline`, `baseline_ratio`, `baseline_cpu_cost`).
With --floor, svc_orders' own order route with no exchange behind it runs too
(ops/bench/api/floor.py: `floor`, `floor_ratio`): what the contract alone costs. A
"machine" figure well above the sum of the others means something else competed for the
cores during that run: its figures are not trustworthy.

The load generator is `wrk` with wrk_orders.lua when `wrk` is on PATH (Debian package
`wrk`), otherwise several Python client processes (aiohttp on uvloop, the connections
split across them); the output says which ("generator"). The first measurement of each
target is preceded by an unreported warm-up. On a small machine wrk, the service and NATS
share the cores: use one wrk thread (the default, --wrk-threads 1) and compare the
generator's CPU with the server's.

    .venv/bin/python -m ops.bench.api                      # c=1,16,64; 5 s each
    .venv/bin/python -m ops.bench.api --seconds 10 --concurrency 64 --generator python
    .venv/bin/python -m ops.bench.api --profile /tmp/orders.txt   # py-spy, see --help
    .venv/bin/python -m ops.bench.api --no-auth            # without the auth target
    .venv/bin/python -m ops.bench.api --rounds 5           # medians, on a busy machine
    .venv/bin/python -m ops.bench.api --rounds 5 --concurrency 64   # auth_cost at 64
    .venv/bin/python -m ops.bench.api --baseline /tmp/base # also the code in /tmp/base
    .venv/bin/python -m ops.bench.api --floor --no-auth --concurrency 64   # the floor

Everything it started is stopped at the end, on errors and on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import NamedTuple

import msgspec

from ops.bench.api.figures import Figures, Line, measure
from ops.bench.api.load import Generator, smoke_test
from ops.bench.api.profiler import py_spy
from ops.bench.api.signing import Key, auth_env, create_key
from ops.bench.harness import given_or_started, service_process
from ops.stack import HOST, NatsServer, RedisServer, free_port, log_tail

ORDERS_PATH = "/orders/"
PAUSE = 0.5  # seconds between runs, for the journal's last acknowledgements to settle


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


@contextlib.contextmanager
def authenticated(folder: Path, env: dict[str, str], redis_pid: int | None, enabled: bool,
                  seconds: int, user_id: str, cpus: set[int] | None,
                  ) -> Iterator[tuple[str, dict[str, int | None], Key] | None]:
    """svc_orders with auth on, on a nats-server of its own (one journal per svc_orders),
    and a trader key of `user_id`: (its orders URL, its pids, the key); None when not
    `enabled`."""
    if not enabled:
        yield None
        return
    port = free_port()
    with NatsServer(folder / "nats-auth") as nats:
        auth = env | auth_env(seconds) | {"EX_NATS_URL": nats.address, "EX_ORDERS_PORT": str(port)}
        key = create_key(nats.address, user_id)
        with service_process("svc_orders (auth)", [sys.executable, "-m", "svc_orders"], auth,
                             port, folder / "svc_orders_auth.log", cpus=cpus) as service:
            yield (f"http://{HOST}:{port}{ORDERS_PATH}",
                   {"server": service.pid, "nats": nats.pid, "redis": redis_pid}, key)


@contextlib.contextmanager
def baseline(folder: Path, env: dict[str, str], redis_pid: int | None, code: Path | None,
             cpus: set[int] | None) -> Iterator[tuple[str, dict[str, int | None], None] | None]:
    """svc_orders from the checkout `code` (e.g. `git worktree add /tmp/base main`), on a
    nats-server of its own: the code before a change, measured in the same rounds as the
    code after it; None without `code`."""
    if code is None:
        yield None
        return
    port = free_port()
    with NatsServer(folder / "nats-baseline") as nats:
        env = env | {"EX_NATS_URL": nats.address, "EX_ORDERS_PORT": str(port),
                     "PYTHONPATH": str(code)}
        with service_process("svc_orders (baseline)", [sys.executable, "-m", "svc_orders"],
                             env, port, folder / "svc_orders_baseline.log",
                             cwd=code, cpus=cpus) as service:
            yield (f"http://{HOST}:{port}{ORDERS_PATH}",
                   {"server": service.pid, "nats": nats.pid, "redis": redis_pid}, None)


@contextlib.contextmanager
def floor(folder: Path, env: dict[str, str], enabled: bool, cpus: set[int] | None,
          ) -> Iterator[tuple[str, dict[str, int | None], None] | None]:
    """svc_orders' order route with no exchange behind it (ops/bench/api/floor.py);
    None when not `enabled`."""
    if not enabled:
        yield None
        return
    port = free_port()
    with service_process("floor", [sys.executable, "-m", "ops.bench.api.floor", str(port)],
                         env, port, folder / "floor.log", cpus=cpus) as service:
        yield f"http://{HOST}:{port}{ORDERS_PATH}", {"server": service.pid}, None


def pinned(enabled: bool) -> set[int] | None:
    """With `enabled` and two CPUs or more: this process (and so the load generator,
    NATS and Redis it starts) moved off the last CPU, and the CPUs the servers run on:
    all of them, so that a server has the last to itself and its snapshot's forked child
    finds room elsewhere. Left to the scheduler, a server shared its core with wrk in
    some runs and not in others, and runs of the same code differed by a third on two
    cores."""
    cpus = sorted(os.sched_getaffinity(0))
    if not enabled or len(cpus) < 2:
        return None
    os.sched_setaffinity(0, set(cpus[:-1]))
    return set(cpus)


def benchmark(args: argparse.Namespace, generator: Generator) -> None:
    server_cpus = pinned(args.pin)
    with (tempfile.TemporaryDirectory(prefix="bench_api-") as tmp,
          backing_stack(Path(tmp)) as (nats_url, redis_url, backing_pids)):
        folder = Path(tmp)
        load = {"wrk_threads": args.wrk_threads, "processes": args.processes}
        user_id = str(uuid.uuid4())
        plain_user = None if args.plain_without_user else user_id
        orders_port, ceiling_port = free_port(), free_port()
        env = {**os.environ, "EX_NATS_URL": nats_url, "EX_REDIS_URL": redis_url,
               "EX_HOST": HOST, "EX_ORDERS_PORT": str(orders_port), "EX_LOG_FORMAT": "json"}
        with (service_process("svc_orders", [sys.executable, "-m", "svc_orders"], env,
                             orders_port, folder / "svc_orders.log",
                             cpus=server_cpus) as service,
              service_process("ceiling", [sys.executable, "-m", "ops.bench.api.ceiling",
                                          str(ceiling_port)], env,
                             ceiling_port, folder / "ceiling.log", cpus=server_cpus) as ceiling,
              authenticated(folder, env, backing_pids["redis"], args.auth,
                            max(args.seconds, args.warmup), user_id,
                            server_cpus) as with_auth,
              baseline(folder, env, backing_pids["redis"], args.baseline,
                       server_cpus) as before,
              floor(folder, env, args.floor, server_cpus) as without_exchange):
            targets: dict[str, tuple[str, dict[str, int | None], Key | None]] = {
                "ceiling": (f"http://{HOST}:{ceiling_port}{ORDERS_PATH}",
                            {"server": ceiling.pid}, None),
                "order_api": (f"http://{HOST}:{orders_port}{ORDERS_PATH}",
                              {"server": service.pid, **backing_pids}, None),
            }
            if with_auth is not None:
                targets["order_api_auth"] = with_auth
            if before is not None:
                targets["order_api_baseline"] = before
            if without_exchange is not None:
                targets["floor"] = without_exchange
            for url, _, key in targets.values():
                smoke_test(url, key)
            if args.warmup:
                for url, _, key in targets.values():
                    measure(generator, url, max(args.concurrency), args.warmup, {}, **load,
                            key=key, user_id=plain_user)
                    time.sleep(PAUSE)
            for concurrency in args.concurrency:
                profiled = args.profile is not None and concurrency == args.concurrency[-1]
                rounds: list[dict[str, Figures]] = []
                groups: list[Groups] = []  # the order API's journal messages, each round
                for number in range(args.rounds):
                    # Every other round runs the two order APIs the other way round, so
                    # that neither always runs after the other.
                    names = list(targets)
                    if number % 2:
                        names = [names[0], *reversed(names[1:])]
                    figures: dict[str, Figures] = {}
                    for name in names:
                        url, pids, key = targets[name]
                        grouped = journal_groups(orders_port)
                        with py_spy(_profile_path(args.profile, name) if profiled else None,
                                    pids["server"]):
                            figures[name] = measure(generator, url, concurrency, args.seconds,
                                                    pids, **load, key=key, user_id=plain_user)
                        time.sleep(PAUSE)
                        if name == "order_api":
                            groups.append(journal_groups(orders_port) - grouped)
                    rounds.append(figures)
                figures = {name: _median_run([one[name] for one in rounds]) for name in targets}
                auth = figures.get("order_api_auth")
                costs = [1 - one["order_api_auth"].requests_per_s
                         / max(1, one["order_api"].requests_per_s)
                         for one in rounds if "order_api_auth" in one]
                base = figures.get("order_api_baseline")
                floor_run = figures.get("floor")
                line = Line(
                    concurrency=concurrency, generator=generator,
                    wrk_threads=(min(args.wrk_threads, concurrency) if generator == "wrk"
                                 else None),
                    python_processes=(min(args.processes, concurrency)
                                      if generator == "python" else None),
                    seconds=args.seconds,
                    pinned=server_cpus is not None,
                    ceiling=figures["ceiling"],
                    order_api=figures["order_api"],
                    ratio=round(figures["order_api"].requests_per_s
                                / max(1, figures["ceiling"].requests_per_s), 3),
                    order_api_auth=auth,
                    rounds=args.rounds,
                    auth_cost=None if auth is None else _median(costs),
                    auth_costs=None if auth is None else [round(c, 3) for c in costs],
                    auth_cpu_cost=None if auth is None else _median(
                        [_cpu_cost(one["order_api_auth"], one["order_api"]) for one in rounds]),
                    commands_per_message=_median([one.per_message for one in groups]),
                    order_api_baseline=base,
                    baseline_ratio=None if base is None else _median(
                        [one["order_api_baseline"].requests_per_s
                         / max(1, one["ceiling"].requests_per_s) for one in rounds]),
                    baseline_cpu_cost=None if base is None else _median(
                        [_cpu_cost(one["order_api_baseline"], one["order_api"])
                         for one in rounds]),
                    floor=floor_run,
                    floor_ratio=None if floor_run is None else _median(
                        [one["floor"].requests_per_s / max(1, one["ceiling"].requests_per_s)
                         for one in rounds]),
                    profiled="order API runs sampled by py-spy (slower)" if profiled else None)
                print(msgspec.json.encode(line).decode(), flush=True)
            if service.poll() is not None:
                raise SystemExit("svc_orders died during the run:\n"
                                 + log_tail(folder / "svc_orders.log", 30))


def _profile_path(given: Path, target: str) -> Path | None:
    """Where the profile of `target` goes: `given` for the order API, the same name with
    "_auth", "_baseline" or "_floor" for the others; the ceiling is not profiled."""
    if target == "ceiling":
        return None
    suffix = "" if target == "order_api" else "_" + target.removeprefix("order_api_")
    return given.with_name(f"{given.stem}{suffix}{given.suffix}")


class Groups(NamedTuple):
    """The order API's journal so far: messages and the commands they held."""

    messages: float
    commands: float

    def __sub__(self, earlier: tuple[float, ...]) -> Groups:
        return Groups(self.messages - earlier[0], self.commands - earlier[1])

    @property
    def per_message(self) -> float:
        return self.commands / max(1.0, self.messages)


def journal_groups(port: int) -> Groups:
    """Read from svc_orders' /metrics: its journal messages and their commands."""
    url = f"http://{HOST}:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    found = dict.fromkeys(("_count", "_sum"), 0.0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        for suffix in found:
            if name == f"orders_journal_group_commands{suffix}":
                found[suffix] = float(value)
    return Groups(found["_count"], found["_sum"])


def _cpu_cost(measured: Figures, plain: Figures) -> float:
    if measured.server_cpu_us is None or not plain.server_cpu_us:
        return math.nan
    return measured.server_cpu_us / plain.server_cpu_us - 1


def _median(values: list[float]) -> float:
    """The median of one figure over the rounds, each comparing runs of the same round."""
    return round(statistics.median(values), 3)


def _median_run(runs: list[Figures]) -> Figures:
    """The run with the median requests per second."""
    return sorted(runs, key=lambda run: run.requests_per_s)[len(runs) // 2]


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
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs per target and concurrency, the order APIs' order "
                             "alternating; the median run is printed, and the auth costs "
                             "are medians of each round's own comparison")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="leave everything to the scheduler (by default the load "
                             "generator, NATS and Redis keep off the last CPU)")
    parser.add_argument("--no-auth", dest="auth", action="store_false",
                        help="skip the order API with auth on")
    parser.add_argument("--plain-without-user", action="store_true",
                        help="plain orders name no user (the signed ones always carry "
                             "their key's): auth_cost then includes the cost of the user")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="also measure svc_orders from this checkout (the code before "
                             "a change), on a nats-server of its own")
    parser.add_argument("--floor", action="store_true",
                        help="also svc_orders' own order route with no exchange behind it "
                             "(ops/bench/api/floor.py): what the contract alone costs")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy raw (folded) profile of svc_orders during its runs at "
                             "the highest concurrency (those of the others beside it, named "
                             "with _auth, _baseline, _floor); sampling slows those runs")
    args = parser.parse_args()
    if min(args.seconds, min(args.concurrency), args.wrk_threads, args.rounds) < 1:
        parser.error("--seconds, --concurrency, --wrk-threads and --rounds must be at least 1")
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
