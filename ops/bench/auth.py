"""What access control costs a request: signature checks and rate-limit counts.

Times `Verifier.verify` for a good signature, a wrong one and an unknown key (the last two
must cost the same: no answer may tell whether a key exists), one rate-limit count with a
real Redis and with Redis down, and one background sync of 100 counters with Redis (one
pipelined round trip). Prints one JSON line of microseconds.

    .venv/bin/python -m ops.bench.auth [--n 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from nats.js.kv import KeyValue

from common import keys
from common.config import Settings
from common.http import ApiError
from common.keyring import Keyring
from common.keys import IssuedKey, KeyRecord, SecretBox
from common.ratelimit import Limiter
from common.signing import Verifier, message, signature
from ops.stack import RedisServer, free_port

SECRET_KEY = "bench-secret-key-of-at-least-32-characters"
PATH = "/orders/?symbol=DEFAULT"
BODY = b'{"side":"buy","quantity":100,"price":"150.25","type":"limit"}'


def _keyring() -> tuple[Keyring, IssuedKey]:
    box = SecretBox(SECRET_KEY)
    issued = IssuedKey(str(uuid.uuid4()), "bench-secret", str(uuid.uuid4()), "trader")
    record = KeyRecord(key_id=issued.key_id, user_id=issued.user_id, role="trader",
                       sealed_secret=box.seal(issued.secret), created_at="")
    keyring = Keyring(box)
    keyring.apply(KeyValue.Entry("b", issued.key_id, keys.encode_record(record), 1, 0, None,
                                 None))
    return keyring, issued


def time_verify(n: int) -> dict[str, float]:
    """Median microseconds per verify, per outcome, over `n` distinct signed requests."""
    keyring, issued = _keyring()
    outcomes: dict[str, list[float]] = {"good": [], "wrong_signature": [], "unknown_key": []}
    verifier = Verifier(keyring, 5.0)
    for i in range(n):
        stamp = str(time.time_ns() // 1_000_000)
        path = f"{PATH}&n={i}"
        good = signature(issued.secret.encode(), message(stamp, "POST", path, BODY))
        cases = {"good": (issued.key_id, good), "wrong_signature": (issued.key_id, "0" * 64),
                 "unknown_key": (str(uuid.uuid4()), good)}
        for name, (key_id, sign) in cases.items():
            started = time.perf_counter_ns()
            with contextlib.suppress(ApiError):
                verifier.verify(key_id, stamp, sign, "POST", path, BODY)
            outcomes[name].append((time.perf_counter_ns() - started) / 1000)
    return {f"verify_{name}_us": round(statistics.median(values), 2)
            for name, values in outcomes.items()}


async def time_count(limiter: Limiter, n: int) -> float:
    """Median microseconds of one counted request (`hit_key`)."""
    samples = []
    for i in range(n):
        started = time.perf_counter_ns()
        limiter.hit_key(f"k{i % 100}")
        samples.append((time.perf_counter_ns() - started) / 1000)
    return round(statistics.median(samples), 1)


async def time_limits(n: int) -> dict[str, float | bool]:
    """A count with Redis up and down, and one sync of 100 counters with Redis."""
    with tempfile.TemporaryDirectory() as folder, RedisServer(Path(folder)).start() as redis:
        shared = Limiter(Settings(redis_url=redis.url, rate_private="1000000/second"))
        on_redis = await time_count(shared, n)
        syncs = []
        for _ in range(50):
            await time_count(shared, 100)  # one new hit on each of the 100 counters
            started = time.perf_counter_ns()
            await shared.sync()
            syncs.append((time.perf_counter_ns() - started) / 1000)
        await shared.close()
    dead = Limiter(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0",
                            rate_private="1000000/second"))
    dead.hit_key("warm-up")
    await dead.sync()  # finds Redis down: counting goes on in memory
    in_memory = await time_count(dead, n)
    await dead.close()
    return {"count_with_redis_us": on_redis, "count_with_redis_down_us": in_memory,
            "sync_100_counters_us": round(statistics.median(syncs), 1),
            "fell_back": dead.on_fallback}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="samples per figure")
    args = parser.parse_args()
    figures: dict[str, float | bool] = {**time_verify(args.n)}
    figures.update(asyncio.run(time_limits(min(args.n, 5_000))))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
