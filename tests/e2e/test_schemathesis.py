"""Each service's OpenAPI document (the one it serves at /openapi.json) drives
schemathesis against the service running as a process on real NATS, PostgreSQL and
Redis, with every check schemathesis has: a request the document allows is accepted, one
it refuses is refused with a 4xx, and every answer (status, content type, headers, body)
is one the document promises. Seeded and short.

The one 400 tolerated for a request the document allows is `INVALID_CURSOR`: a cursor is
opaque (only the listing that issued it knows it), so no schema can tell a good one.
"""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis import Case
from schemathesis.checks import positive_data_acceptance

from common.openapi import document
from ops.stack import HOST, EmbeddedServer, NatsServer, PostgresServer, RedisServer
from svc_orders import openapi as orders
from svc_trades import openapi as trades
from tests.helpers import create_database
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
    folder = tmp_path_factory.mktemp("schemathesis")
    with NatsServer(folder / "nats") as nats, RedisServer(folder / "redis") as redis:
        env = {"EX_NATS_URL": nats.url, "EX_REDIS_URL": redis.url, "EX_LOG_FORMAT": "json",
               "EX_PG_DSN": asyncio.run(create_database(postgres_server))}
        with (Service("svc_trades", "EX_TRADES_PORT", env, folder / "trades") as trades,
              Service("svc_orders", "EX_ORDERS_PORT", env, folder / "orders") as orders):
            yield {"orders": orders.address, "trades": trades.address}


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


def _call_and_validate(case: Case[Any], base_url: str) -> None:
    case.call_and_validate(base_url=base_url, excluded_checks=[positive_data_acceptance],
                           additional_checks=[accepted_unless_foreign_cursor], timeout=10)


orders_schema = schemathesis.openapi.from_dict(document("svc_orders", orders.OPERATIONS))
trades_schema = schemathesis.openapi.from_dict(document("svc_trades", trades.OPERATIONS))


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
