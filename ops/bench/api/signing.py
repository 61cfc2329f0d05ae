"""Signing the benchmark's orders as a real client does: every request signed with the
key's secret, each signature used once.

wrk's Lua has no HMAC, so the orders of a run are signed just before it (`presign`),
for both generators alike, with timestamps in the middle of the run; the bench's
svc_orders accepts a window of half the run and a little more (`window`: the default
5 s for runs up to 6 s, so that its replay guard remembers what a production server's
does). The server does exactly the work it does for a client signing on the fly.
The orders are those `load.order_body` makes (sides alternate, prices and quantities
uniform), but dealt out like cards: each timestamp signs every distinct order once, in
random order, so that no two requests share a signature (the server refuses a replay).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import nats

from common import keys
from common.keys import SecretBox
from ops.bench.api.load import PRICES, QUANTITIES, order_json

SECRET_KEY = "bench-secret-key-of-at-least-32-characters"
DEFAULT_WINDOW = 5  # seconds: EX_AUTH_WINDOW's default
SLACK = 2  # seconds of window beyond half the run: signing, start-up, a slow last answer
RATE = "999999999/second"  # limits counted as usual, never reached
ORDERS_PATH = "/orders/"


class Key(msgspec.Struct, frozen=True):
    key_id: str
    secret: str
    user_id: str

    def headers(self, body: bytes, timestamp: str | None = None) -> dict[str, str]:
        """The EX-ACCESS-* headers of POST /orders/ with `body`."""
        timestamp = timestamp or str(time.time_ns() // 1_000_000)
        signed = f"{timestamp}POST{ORDERS_PATH}".encode() + body
        return {"EX-ACCESS-KEY": self.key_id, "EX-ACCESS-TIMESTAMP": timestamp,
                "EX-ACCESS-SIGN": hmac.new(self.secret.encode(), signed,
                                           hashlib.sha256).hexdigest()}


def create_key(nats_url: str, user_id: str) -> Key:
    """A trader key of `user_id` in the keys bucket of the NATS server at `nats_url`."""

    async def create() -> Key:
        connection = await nats.connect(nats_url)
        try:
            issued = await keys.create_key(await keys.bucket(connection.jetstream()),
                                           SecretBox(SECRET_KEY), "trader", user_id)
        finally:
            await connection.drain()
        return Key(issued.key_id, issued.secret, issued.user_id)

    return asyncio.run(create())


def window(seconds: int) -> int:
    """The EX_AUTH_WINDOW that accepts every order of a `seconds`-long run signed for its
    middle (at most 60, the setting's limit)."""
    return min(60, max(DEFAULT_WINDOW, math.ceil(seconds / 2) + SLACK))


def auth_env(seconds: int) -> dict[str, str]:
    """The EX_ variables of the bench's svc_orders with auth on, for runs of `seconds`."""
    return {"EX_AUTH": "on", "EX_SECRET_KEY": SECRET_KEY,
            "EX_AUTH_WINDOW": str(window(seconds)), "EX_RATE_PRIVATE": RATE,
            "EX_RATE_PUBLIC": RATE, "EX_RATE_AUTH_FAILURES": RATE}


def _dealt(rng: random.Random) -> Iterator[tuple[int, bytes]]:
    """(timestamp offset in ms, order): every distinct order once per millisecond."""
    orders = list(itertools.product(QUANTITIES, PRICES))
    for offset in itertools.count():
        buys, sells = rng.sample(orders, len(orders)), rng.sample(orders, len(orders))
        for buy, sell in zip(buys, sells, strict=True):
            yield offset, order_json("buy", *buy)
            yield offset, order_json("sell", *sell)


def presign(key: Key, count: int, path: Path, seconds: float = 0) -> Path:
    """`count` signed orders for a run of `seconds` starting once they are signed, one
    per line: timestamp (the run's middle), signature and body, tab-separated (what
    wrk_orders.lua and the Python clients read)."""
    start = time.time_ns() // 1_000_000 + round((_signing_time(key, count) + seconds / 2) * 1000)
    with path.open("wb") as out:
        for offset, body in itertools.islice(_dealt(random.Random()), count):
            timestamp = str(start + offset)
            sign = key.headers(body, timestamp)["EX-ACCESS-SIGN"]
            out.write(f"{timestamp}\t{sign}\t".encode() + body + b"\n")
    return path


def _signing_time(key: Key, count: int) -> float:
    """Seconds that signing `count` orders will take (the run starts once they are
    signed: on a busy machine that is seconds, which the timestamps must allow for)."""
    sample = min(count, 500)
    started = time.perf_counter()
    for _ in range(sample):
        key.headers(b'{"side":"buy","quantity":1,"price":"100.00"}', "0")
    return (time.perf_counter() - started) / max(1, sample) * count


def signed_lines(path: Path, part: int, parts: int) -> list[tuple[dict[str, str], bytes]]:
    """Lines part, part + parts, ... of a `presign` file as (headers, body)."""
    found = []
    with path.open("rb") as lines:
        for line in itertools.islice(lines, part, None, parts):
            timestamp, sign, body = line.rstrip(b"\n").split(b"\t", 2)
            found.append(({"EX-ACCESS-TIMESTAMP": timestamp.decode(),
                           "EX-ACCESS-SIGN": sign.decode()}, body))
    return found
