"""One run's figures: requests/s, latency, errors and where the CPU went."""

from __future__ import annotations

import tempfile
from pathlib import Path

import msgspec

from ops.bench import cpu
from ops.bench.api.clients import run_python
from ops.bench.api.load import Generator
from ops.bench.api.signing import Key, presign
from ops.bench.api.wrk import run_wrk

# Signed orders prepared per second of a wrk run: more than svc_orders answers on this
# kind of machine; a run that used them all would show its replays as non-2xx answers.
PRESIGNED_PER_SECOND = 25_000


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
    # The server's CPU per answered request: what a request costs even when other work
    # on the machine takes cores from the server (requests per second then fall).
    server_cpu_us: float | None = None


class Line(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The output for one concurrency."""

    concurrency: int
    generator: Generator
    wrk_threads: int | None = None
    python_processes: int | None = None
    seconds: int
    # The load generator, NATS and Redis kept off the last CPU, which the servers may use.
    pinned: bool = False
    ceiling: Figures
    order_api: Figures
    ratio: float  # order_api / ceiling requests per second
    rounds: int = 1  # runs per target: the figures are the median run's
    # The same order API with auth on (every request signed, rate limits counted), and
    # what it costs: 1 - its requests per second / order_api's, and its server CPU per
    # request / order_api's - 1 (the steadier figure on a busy machine).
    order_api_auth: Figures | None = None
    auth_cost: float | None = None
    auth_cpu_cost: float | None = None
    # Each round's own auth_cost, in run order: the spread on a busy machine.
    auth_costs: list[float] | None = None
    commands_per_message: float | None = None  # order_api's journal: group commit
    # svc_orders from another checkout (--baseline), measured in the same rounds: its
    # ratio to the ceiling, and its server CPU per request / order_api's - 1.
    order_api_baseline: Figures | None = None
    baseline_ratio: float | None = None
    baseline_cpu_cost: float | None = None
    # svc_orders' own order route with no exchange behind it (--floor,
    # ops/bench/api/floor.py): what the contract alone costs, and its ratio to the ceiling.
    floor: Figures | None = None
    floor_ratio: float | None = None
    profiled: str | None = None


def measure(generator: Generator, url: str, concurrency: int, seconds: int,
            pids: dict[str, int | None], *, wrk_threads: int, processes: int,
            key: Key | None = None, user_id: str | None = None) -> Figures:
    """One run's figures, with the CPU (in cores) of `pids` and of the load generator;
    every request signed with `key` if given (just before the run starts), else plain
    orders for `user_id` if given."""
    with tempfile.TemporaryDirectory(prefix="bench_api_signed-") as folder:
        signed = None
        if key is not None:
            signed = key.key_id, presign(key, PRESIGNED_PER_SECOND * seconds,
                                         Path(folder) / "orders.tsv", seconds)
        return _measure(generator, url, concurrency, seconds, pids, wrk_threads, processes,
                        signed, user_id)


def _measure(generator: Generator, url: str, concurrency: int, seconds: int,
             pids: dict[str, int | None], wrk_threads: int, processes: int,
             signed: tuple[str, Path] | None, user_id: str | None) -> Figures:
    before = {name: cpu.process_seconds(pid) for name, pid in pids.items()}
    generator_before = cpu.waited_children_seconds()
    machine_before = cpu.machine_busy_seconds()
    result = (run_wrk(url, concurrency, seconds, wrk_threads, signed, user_id)
              if generator == "wrk"
              else run_python(url, concurrency, seconds, processes, signed, user_id))
    spent = {name: cpu.process_seconds(pid) - before[name]
             for name, pid in pids.items() if pid is not None}
    cores = {name: round(seconds / result.seconds, 2) for name, seconds in spent.items()}
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
        socket_errors=result.socket_errors, cpu_cores=cores,
        server_cpu_us=(round(spent["server"] / result.requests * 1e6, 1)
                       if "server" in spent and result.requests else None))
