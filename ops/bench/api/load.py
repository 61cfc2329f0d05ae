"""The load both generators send, and what one timed run of either measured."""

from __future__ import annotations

import random
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Literal

import msgspec

if TYPE_CHECKING:  # signing uses this module's orders
    from ops.bench.api.signing import Key

REQUEST_TIMEOUT = 5.0  # seconds before a request counts as a socket error (both generators)
RUN_GRACE = 30.0  # seconds a run may overrun its duration before it is killed
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

PRICES = range(9990, 10011)  # cents: 99.90 to 100.10
QUANTITIES = range(1, 11)


def order_body(rng: random.Random, number: int, user_id: str | None = None) -> bytes:
    """The n-th order of a client: sides alternate, prices and quantities are random
    (as wrk_orders.lua makes them), for `user_id` if given."""
    return order_json("sell" if number % 2 else "buy", rng.choice(QUANTITIES),
                      rng.choice(PRICES), user_id)


def order_json(side: str, quantity: int, cents: int, user_id: str | None = None) -> bytes:
    user = "" if user_id is None else f',"user_id":"{user_id}"'
    return (f'{{"side":"{side}","quantity":{quantity},'
            f'"price":"{cents // 100}.{cents % 100:02d}"{user}}}').encode()


def smoke_test(url: str, key: Key | None = None) -> None:
    """One order through `url` (signed with `key` if given): it must answer 2xx, or the
    measurements would be noise."""
    body = order_body(random.Random(), 0)
    headers = JSON_HEADERS | ({} if key is None else key.headers(body))
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
            response.read()
    except urllib.error.HTTPError as error:
        raise SystemExit(f"POST {url} answered {error.code}: {error.read()[:500]!r}") from None
