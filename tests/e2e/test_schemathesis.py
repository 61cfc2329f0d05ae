"""Each service's OpenAPI document (the one it serves at /openapi.json) drives
schemathesis against the service running as a process on real NATS, PostgreSQL and
Redis, with every check schemathesis has: a request the document allows is accepted, one
it refuses is refused with a 4xx, and every answer (status, content type, headers, body)
is one the document promises. Seeded and short.

Both modes: auth off, and auth on with every request signed by an admin key (so every
operation is open to it, the admin key routes included, and every answer must carry the
RateLimit-* headers the document requires). schemathesis' `ignored_auth` check is left
out with auth on, since the signing here happens below schemathesis, which cannot take
the credentials off; `tests/auth` sends every route unsigned instead.

The one 400 tolerated for a request the document allows is `INVALID_CURSOR`: a cursor is
opaque (only the listing that issued it knows it), so no schema can tell a good one.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import nats
import pytest
import requests
import schemathesis
from schemathesis import Case
from schemathesis.checks import ignored_auth, positive_data_acceptance

from common import keys
from common.keys import IssuedKey
from common.openapi import document
from ops.stack import HOST, EmbeddedServer, NatsServer, PostgresServer, RedisServer
from svc_orders import openapi as orders
from svc_trades import openapi as trades
from tests.common.auth import SECRET_KEY
from tests.helpers import create_database
from tests.signing import signed_headers
from tests.system import REPO

pytestmark = pytest.mark.integration

SETTINGS = hypothesis.settings(
    max_examples=15, derandomize=True, deadline=None, database=None,
    suppress_health_check=list(hypothesis.HealthCheck))


class Service(EmbeddedServer):
    """`python -m <module>` with only the given EX_ variables, ready when /ready/ is 200."""

    def __init__(self, module: str, port_var: str, env: dict[str, str], folder: Path):
        self.name = module
        super().__init__(folder, start_timeout=60)  # the suite shares two cores
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith("EX_")} | env | {port_var: str(self.port)}

    @property
    def address(self) -> str:
        return f"http://{HOST}:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", self.name]

    def popen_extra(self) -> dict[str, Any]:
        return {"env": self.env, "cwd": REPO}

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.address}/ready/", timeout=0.5) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False


@pytest.fixture(scope="module")
def services(postgres_server: PostgresServer,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """svc_orders and svc_trades on a journal, a cache and a projection of their own."""
    yield from _run_services(postgres_server, tmp_path_factory.mktemp("schemathesis"), {})


AUTH_ON = {"EX_AUTH": "on", "EX_SECRET_KEY": SECRET_KEY, "EX_RATE_PRIVATE": "100000/second",
           "EX_RATE_PUBLIC": "100000/second", "EX_RATE_AUTH_FAILURES": "100000/minute"}


@pytest.fixture(scope="module")
def signed_services(postgres_server: PostgresServer,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The same with auth on, and a session that signs every request with an admin key."""
    folder = tmp_path_factory.mktemp("schemathesis_auth")
    admin: dict[str, IssuedKey] = {}
    for addresses in _run_services(postgres_server, folder, AUTH_ON, admin):
        with requests.Session() as session:
            session.auth = Signer(admin["key"])
            yield {**addresses, "session": session}


def _run_services(postgres_server: PostgresServer, folder: Path, extra: dict[str, str],
                  admin: dict[str, IssuedKey] | None = None) -> Iterator[dict[str, str]]:
    with NatsServer(folder / "nats") as nats_server, RedisServer(folder / "redis") as redis:
        env = {"EX_NATS_URL": nats_server.url, "EX_REDIS_URL": redis.url,
               "EX_LOG_FORMAT": "json",
               "EX_PG_DSN": asyncio.run(create_database(postgres_server)), **extra}
        if admin is not None:
            admin["key"] = asyncio.run(_admin_key(nats_server.url))
        with (Service("svc_trades", "EX_TRADES_PORT", env, folder / "trades") as trades,
              Service("svc_orders", "EX_ORDERS_PORT", env, folder / "orders") as orders):
            yield {"orders": orders.address, "trades": trades.address}


async def _admin_key(nats_url: str) -> IssuedKey:
    connection = await nats.connect(nats_url)
    try:
        bucket = await keys.bucket(connection.jetstream())
        return await keys.create_key(bucket, keys.SecretBox(SECRET_KEY), "admin")
    finally:
        await connection.close()


SIGNING_HEADERS = ("EX-ACCESS-KEY", "EX-ACCESS-TIMESTAMP", "EX-ACCESS-SIGN")


class Signer(requests.auth.AuthBase):
    """Signs each request as sent (path with query, body bytes), each with a timestamp
    of its own, so that no two signatures are alike (a repeat would be a replay).

    schemathesis fills the three headers the document requires with values of its own,
    and leaves one out to check that the request is refused: the values of a request
    with all three are replaced by real ones, one without them all is sent as it is."""

    def __init__(self, key: IssuedKey) -> None:
        self.key, self.last = key, 0

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if not all(name in request.headers for name in SIGNING_HEADERS):
            return request
        self.last = max(self.last + 1, time.time_ns() // 1_000_000)
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        assert isinstance(raw, bytes), "a streamed body cannot be signed"
        request.headers.update(signed_headers(
            self.key.key_id, self.key.secret, request.method or "", request.path_url, raw,
            str(self.last)))
        return request


def accepted_unless_foreign_cursor(ctx: schemathesis.CheckContext,
                                   response: schemathesis.Response,
                                   case: Case[Any]) -> bool | None:
    """schemathesis' `positive_data_acceptance`, except for a cursor no listing issued."""
    if response.status_code == 400 and _error_code(response) == "INVALID_CURSOR":
        return None
    verdict: bool | None = positive_data_acceptance(ctx, response, case)
    return verdict


def _error_code(response: schemathesis.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def _call_and_validate(case: Case[Any], base_url: str,
                       session: requests.Session | None = None) -> None:
    excluded = [positive_data_acceptance, *([ignored_auth] if session else [])]
    case.call_and_validate(base_url=base_url, session=session, excluded_checks=excluded,
                           additional_checks=[accepted_unless_foreign_cursor], timeout=10)


orders_schema = schemathesis.openapi.from_dict(document("svc_orders", orders.OPERATIONS))
trades_schema = schemathesis.openapi.from_dict(document("svc_trades", trades.OPERATIONS))
signed_orders_schema = schemathesis.openapi.from_dict(
    document("svc_orders", orders.OPERATIONS, auth=True))
signed_trades_schema = schemathesis.openapi.from_dict(
    document("svc_trades", trades.OPERATIONS, auth=True))
SIGNED_SETTINGS = hypothesis.settings(SETTINGS, max_examples=8)


@orders_schema.parametrize()
@SETTINGS
def test_orders_api_is_what_its_document_says(case: Case[Any],
                                              services: dict[str, str]) -> None:
    _call_and_validate(case, services["orders"])


@trades_schema.parametrize()
@SETTINGS
def test_trades_api_is_what_its_document_says(case: Case[Any],
                                              services: dict[str, str]) -> None:
    _call_and_validate(case, services["trades"])


@signed_orders_schema.parametrize()
@SIGNED_SETTINGS
def test_orders_api_with_auth_on_is_what_its_document_says(
        case: Case[Any], signed_services: dict[str, Any]) -> None:
    _call_and_validate(case, signed_services["orders"], signed_services["session"])


@signed_trades_schema.parametrize()
@SIGNED_SETTINGS
def test_trades_api_with_auth_on_is_what_its_document_says(
        case: Case[Any], signed_services: dict[str, Any]) -> None:
    _call_and_validate(case, signed_services["trades"], signed_services["session"])
