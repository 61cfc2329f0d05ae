"""The wrk load generator with wrk_orders.lua (Debian package `wrk`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ops.bench.api.load import REQUEST_TIMEOUT, RUN_GRACE, Result

LUA_SCRIPT = Path(__file__).with_name("wrk_orders.lua")


def run_wrk(url: str, concurrency: int, seconds: int, threads: int,
            signed: tuple[str, Path] | None = None, user_id: str | None = None) -> Result:
    """`signed`: the key id and the file of orders signed with it (`signing.presign`);
    `user_id`: the user of the plain orders."""
    threads = min(threads, concurrency)
    command = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s",
               "--timeout", f"{REQUEST_TIMEOUT:.0f}s", "-s", str(LUA_SCRIPT), url]
    if signed is not None:
        command += ["--", "signed", signed[0], str(signed[1]), str(threads)]
    elif user_id is not None:
        command += ["--", "user", user_id]
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
