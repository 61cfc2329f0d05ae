"""The access middleware on a small app: who gets through, who is refused and how, and the
rate limits (real Redis, and a dead one for the fallback)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import pytest
import redis.asyncio
from aiohttp import web

from common.access import identity, protect, requires
from common.config import Settings
from common.http import add_probes, add_routes, json_response, new_app
from common.keyring import Keyring
from common.keys import IssuedKey, Role, SecretBox
from common.ratelimit import Limiter
from common.signing import Verifier
from ops.stack import RedisServer, free_port
from tests.common.auth import SECRET_KEY, entry, issue, record_of
from tests.helpers import AppClient, eventually
from tests.signing import now_ms, sign, signed_headers, signing_session

MakeClient = Callable[..., Awaitable[AppClient]]
REDIS_DB = 11
RATE_HEADERS = {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}
BODY = b'{"side":"buy","quantity":1}'


class Shop:
    """The app under test: what its handlers saw."""

    def __init__(self, settings: Settings, limiter: Limiter) -> None:
        self.box = SecretBox(SECRET_KEY)
        self.keyring = Keyring(self.box)
        self.limiter = limiter
        self.calls: list[tuple[str, Any]] = []  # (handler, identity)
        self.app = new_app(settings.max_body_bytes)
        add_probes(self.app, lambda: True, settings)
        add_routes(self.app, [("GET", "/orders/", self._handler("list")),
                              ("POST", "/orders/", self._handler("place")),
                              ("GET", "/orderbook/", self._handler("book")),
                              ("POST", "/trades/{trade_id}/settle/",
                               requires("admin")(self._handler("settle")))])
        protect(self.app, settings, Verifier(self.keyring, settings.auth_window),
                limiter, public={"/orderbook/"})

    def _handler(self, name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            body = (await request.read()).decode()
            self.calls.append((name, identity(request)))
            return json_response({"handler": name, "body": body})
        return handle

    def key(self, role: Role = "trader") -> IssuedKey:
        return issue(self.keyring, self.box, role)


def redis_url(server: RedisServer) -> str:
    return server.url.rsplit("/", 1)[0] + f"/{REDIS_DB}"


async def make_shop(aiohttp_client: MakeClient, settings: Settings
                    ) -> AsyncIterator[tuple[Shop, AppClient]]:
    limiter = Limiter(settings)
    shop = Shop(settings, limiter)
    try:
        yield shop, await aiohttp_client(shop.app)
    finally:
        await limiter.close()


@pytest.fixture
async def settings(redis_server: RedisServer) -> Settings:
    async with redis.asyncio.from_url(redis_url(redis_server)) as client:
        await client.flushdb()  # counters of earlier tests would eat this one's quota
    return Settings(auth="on", secret_key=SECRET_KEY, redis_url=redis_url(redis_server),
                    rate_private="5/minute", rate_public="4/minute",
                    rate_auth_failures="3/minute")


@pytest.fixture
async def served(aiohttp_client: MakeClient, settings: Settings
                 ) -> AsyncIterator[tuple[Shop, AppClient]]:
    async for pair in make_shop(aiohttp_client, settings):
        yield pair


async def error_of(response: Any) -> tuple[int, str]:
    return response.status, (await response.json())["error"]["code"]


async def test_a_signed_request_reaches_its_handler_with_the_callers_identity(
        served: tuple[Shop, AppClient]) -> None:
    shop, client = served
    key = shop.key()
    response = await client.post("/orders/?symbol=DEFAULT", data=BODY, headers=signed_headers(
        key.key_id, key.secret, "POST", "/orders/?symbol=DEFAULT", BODY))
    assert response.status == 200
    assert (await response.json())["body"] == BODY.decode()  # the handler still reads it
    live = shop.keyring.get(key.key_id)
    assert live is not None
    assert shop.calls == [("place", live.identity)]
    assert set(response.headers) >= RATE_HEADERS
    assert response.headers["RateLimit-Limit"] == "5"
    assert response.headers["RateLimit-Remaining"] == "4"


async def test_the_signing_session_signs_every_request(served: tuple[Shop, AppClient]) -> None:
    shop, client = served
    key = shop.key()
    async with signing_session(key.key_id, key.secret, str(client.make_url("/"))) as session:
        async with session.get("/orders/?status=ACTIVE&page=2") as response:
            assert response.status == 200
        async with session.post("/orders/", json={"side": "sell"}) as response:
            assert response.status == 200
            assert json.loads((await response.json())["body"]) == {"side": "sell"}
        async with session.delete("/orders/") as response:
            assert response.status == 405  # no such route: the router answers as usual
    assert [name for name, _ in shop.calls] == ["list", "place"]


@pytest.mark.parametrize("refusal", ["missing", "wrong", "unknown", "revoked", "stale",
                                     "future", "bad key id", "tampered body"])
async def test_a_refused_request_never_reaches_the_handler(
        served: tuple[Shop, AppClient], refusal: str) -> None:
    shop, client = served
    key = shop.key()
    stamp, body = now_ms(), BODY
    headers = signed_headers(key.key_id, key.secret, "POST", "/orders/", BODY, stamp)
    if refusal == "missing":
        del headers["EX-ACCESS-SIGN"]
    elif refusal == "wrong":
        headers["EX-ACCESS-SIGN"] = sign("guess", stamp, "POST", "/orders/", BODY)
    elif refusal == "unknown":
        headers["EX-ACCESS-KEY"] = shop.key().key_id[:-1] + "0"
    elif refusal == "revoked":
        shop.keyring.apply(entry(record_of(key, shop.box, revoked_at="2026-12-04T11:00:00Z")))
    elif refusal in ("stale", "future"):
        moved = str(int(stamp) + (-6_000 if refusal == "stale" else 6_000))
        headers = signed_headers(key.key_id, key.secret, "POST", "/orders/", BODY, moved)
    elif refusal == "bad key id":
        headers["EX-ACCESS-KEY"] = "admin"
    else:
        body = BODY.replace(b"1", b"9")
    response = await client.post("/orders/", data=body, headers=headers)
    expected = {"missing": "AUTH_REQUIRED", "stale": "TIMESTAMP_OUT_OF_WINDOW",
                "future": "TIMESTAMP_OUT_OF_WINDOW", "bad key id": "INVALID_KEY"}
    assert await error_of(response) == (401, expected.get(refusal, "INVALID_SIGNATURE"))
    assert set((await response.json())["error"]) == {"code", "message", "details"}
    assert shop.calls == []
    # The failed-authentication limit, or the public one for a request without credentials.
    assert response.headers["RateLimit-Limit"] == ("4" if refusal == "missing" else "3")


async def test_an_unknown_key_and_a_wrong_signature_answer_the_same_bytes(
        served: tuple[Shop, AppClient]) -> None:
    shop, client = served
    key = shop.key()
    wrong = signed_headers(key.key_id, "not-the-secret", "GET", "/orders/")
    unknown = signed_headers("0" * 8 + key.key_id[8:], key.secret, "GET", "/orders/")
    answers = [await client.get("/orders/", headers=h) for h in (wrong, unknown)]
    assert answers[0].status == answers[1].status == 401
    assert await answers[0].read() == await answers[1].read()


async def test_a_replayed_request_is_refused_and_changes_nothing(
        served: tuple[Shop, AppClient]) -> None:
    shop, client = served
    key = shop.key()
    headers = signed_headers(key.key_id, key.secret, "POST", "/orders/", BODY)
    assert (await client.post("/orders/", data=BODY, headers=headers)).status == 200
    replayed = await client.post("/orders/", data=BODY, headers=headers)
    assert await error_of(replayed) == (401, "REPLAYED_REQUEST")
    assert len(shop.calls) == 1


async def test_roles_are_enforced_per_route(served: tuple[Shop, AppClient]) -> None:
    shop, client = served

    async def call(key: IssuedKey, method: str, path: str) -> int:
        headers = signed_headers(key.key_id, key.secret, method, path)
        return (await client.request(method, path, headers=headers)).status

    viewer, trader, admin = shop.key("viewer"), shop.key("trader"), shop.key("admin")
    assert await call(viewer, "GET", "/orders/") == 200
    assert await call(viewer, "POST", "/orders/") == 403
    assert await call(trader, "POST", "/orders/") == 200
    assert await call(trader, "POST", "/trades/abc/settle/") == 403
    assert await call(admin, "POST", "/trades/abc/settle/") == 200
    assert await call(admin, "POST", "/orders/") == 200
    assert [name for name, _ in shop.calls] == ["list", "place", "settle", "place"]
    denied = await client.post("/orders/", headers=signed_headers(
        viewer.key_id, viewer.secret, "POST", "/orders/"))
    assert await error_of(denied) == (403, "PERMISSION_DENIED")
    assert set(denied.headers) >= RATE_HEADERS


async def test_public_routes_and_probes_need_no_key(served: tuple[Shop, AppClient]) -> None:
    shop, client = served
    for path in ("/orderbook/", "/orderbook"):
        response = await client.get(path)
        assert response.status == 200, path
        assert set(response.headers) >= RATE_HEADERS
    assert shop.calls == [("book", None), ("book", None)]
    for _ in range(5):  # probes are never counted: more than the public limit all pass
        for probe in ("/health/", "/ready"):
            assert (await client.get(probe)).status == 200
        # With auth on and no EX_METRICS_TOKEN, /metrics is refused by its own rule.
        assert (await client.get("/metrics")).status == 403
    unknown = await client.get("/nowhere/")
    assert unknown.status == 404
    assert set(unknown.headers) >= RATE_HEADERS


async def test_over_its_limit_a_key_gets_429_with_retry_after(
        served: tuple[Shop, AppClient]) -> None:
    shop, client = served
    key, other = shop.key(), shop.key()
    for n in range(5):  # a query of its own each: two requests in one millisecond would
        path = f"/orders/?n={n}"  # carry the same signature, and the second is a replay
        response = await client.get(path, headers=signed_headers(
            key.key_id, key.secret, "GET", path))
        assert response.status == 200
    assert response.headers["RateLimit-Remaining"] == "0"
    limited = await client.get("/orders/", headers=signed_headers(
        key.key_id, key.secret, "GET", "/orders/"))
    assert await error_of(limited) == (429, "RATE_LIMITED")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert len(shop.calls) == 5
    assert (await client.get("/orders/", headers=signed_headers(
        other.key_id, other.secret, "GET", "/orders/"))).status == 200


async def test_public_routes_are_limited_per_address(served: tuple[Shop, AppClient]) -> None:
    shop, client = served
    statuses = [(await client.get("/orderbook/")).status for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    assert len(shop.calls) == 4


async def test_a_burst_of_bad_signatures_locks_the_address_out(
        served: tuple[Shop, AppClient]) -> None:
    shop, client = served
    key = shop.key()
    for _ in range(3):
        bad = await client.get("/orders/", headers=signed_headers(
            key.key_id, "guess", "GET", "/orders/"))
        assert await error_of(bad) == (401, "INVALID_SIGNATURE")
    locked = await client.get("/orders/", headers=signed_headers(
        key.key_id, key.secret, "GET", "/orders/"))
    assert await error_of(locked) == (429, "RATE_LIMITED")
    assert int(locked.headers["Retry-After"]) >= 1
    assert shop.calls == []


async def test_without_auth_everything_passes_as_before(aiohttp_client: MakeClient,
                                                        settings: Settings) -> None:
    off = Settings(redis_url=settings.redis_url, rate_public="1/minute")
    async for shop, client in make_shop(aiohttp_client, off):
        for _ in range(3):
            response = await client.post("/trades/x/settle/", data=BODY)
            assert response.status == 200
            assert not RATE_HEADERS & set(response.headers)
        assert shop.calls == [("settle", None)] * 3


async def test_with_redis_down_the_limits_hold_in_memory(aiohttp_client: MakeClient,
                                                         settings: Settings) -> None:
    dead = Settings(auth="on", secret_key=SECRET_KEY, rate_private="2/minute",
                    redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async for shop, client in make_shop(aiohttp_client, dead):
        key = shop.key()
        statuses = [(await client.get(f"/orders/?n={n}", headers=signed_headers(
            key.key_id, key.secret, "GET", f"/orders/?n={n}"))).status for n in range(3)]
        assert statuses == [200, 200, 429]
        await eventually(partial(getattr, shop.limiter, "on_fallback"))


async def test_requests_without_credentials_count_as_public_traffic(
        served: tuple[Shop, AppClient]) -> None:
    shop, client = served
    statuses = [(await client.get("/orders/")).status for _ in range(5)]
    assert statuses == [401, 401, 401, 401, 429]  # the public limit, 4 a minute
    key = shop.key()  # not locked out as bad signatures would lock it
    signed = await client.get("/orders/", headers=signed_headers(
        key.key_id, key.secret, "GET", "/orders/"))
    assert signed.status == 200
