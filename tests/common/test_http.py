"""The HTTP edge every service shares: whatever arrives, the answer has the contract's shape."""

import asyncio
import json
from collections.abc import AsyncIterator

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from common.config import Settings
from common.http import (
    SERVER_NAME,
    add_probes,
    add_routes,
    json_response,
    new_app,
    query_int,
    read_json,
)


class Body(msgspec.Struct):
    side: str


async def _echo(request: web.Request) -> web.Response:
    return json_response({"side": (await read_json(request, Body)).side}, 201)


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = new_app(max_body_bytes=64 * 1024)
    add_routes(app, [("POST", "/things/", _echo)])
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def _raw(client: TestClient[web.Request, web.Application], request: bytes) -> bytes:
    """Send `request` as raw bytes and read the whole answer (the server closes)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


def _split(answer: bytes) -> tuple[str, dict[str, str], dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines)}
    return status, headers, json.loads(body)


async def test_a_body_nested_past_the_decoder_depth_is_a_400(
        client: TestClient[web.Request, web.Application]) -> None:
    deep = '{"x": ' + "[" * 1000 + "]" * 1000 + ', "side": "buy"}'
    response = await client.post("/things/", data=deep)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "INVALID_JSON"
    assert (await client.post("/things/", data='{"side": "buy"}')).status == 201


async def test_405_names_the_allowed_methods(
        client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/things/")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    assert (await response.json())["error"]["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize("request_bytes", [
    b"GET /things/?q=" + b"x" * 9000 + b"SECRET HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /things/ HTTP/1.1\r\nHost: a\r\nX-Long: " + b"y" * 9000 + b"SECRET\r\n\r\n",
    b"GET /things/ HTTP/1.1\r\nHost: a\r\nBad Header SECRET\r\n\r\n",
])
async def test_unparsable_requests_get_the_error_shape_without_echo(
        client: TestClient[web.Request, web.Application], request_bytes: bytes) -> None:
    answer = await _raw(client, request_bytes)
    status, headers, body = _split(answer)
    assert status.split()[1] == "400"
    assert headers["content-type"].startswith("application/json")
    assert headers["server"] == SERVER_NAME
    assert body["error"]["code"] == "BAD_REQUEST"  # type: ignore[index]
    assert b"SECRET" not in answer


async def test_no_answer_names_python_or_aiohttp(
        client: TestClient[web.Request, web.Application]) -> None:
    for response in (await client.post("/things/", data='{"side": "buy"}'),
                     await client.get("/nowhere/"), await client.get("/things/")):
        assert response.headers["Server"] == SERVER_NAME


TOKEN = "m" * 40


@pytest.mark.parametrize(("settings", "authorization", "status"), [
    (Settings(), None, 200),  # auth off: every service listens on loopback only
    (Settings(auth="on", secret_key="s" * 32), None, 403),
    (Settings(auth="on", secret_key="s" * 32, metrics_token=TOKEN), None, 401),
    (Settings(auth="on", secret_key="s" * 32, metrics_token=TOKEN), "Bearer wrong", 401),
    (Settings(auth="on", secret_key="s" * 32, metrics_token=TOKEN), f"Bearer {TOKEN}", 200),
    (Settings(metrics_token=TOKEN), None, 401),
    (Settings(metrics_token=TOKEN), f"Bearer {TOKEN}", 200),
])
async def test_metrics_are_served_only_to_whom_the_settings_say(
        settings: Settings, authorization: str | None, status: int) -> None:
    app = new_app(max_body_bytes=1024)
    add_probes(app, lambda: True, settings)
    headers = {} if authorization is None else {"Authorization": authorization}
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/metrics", headers=headers)
        assert response.status == status
        body = await response.read()
        assert (b"python_info" in body) == (status == 200)
        assert TOKEN.encode() not in body
        assert (await client.get("/health/")).status == 200


async def _page(request: web.Request) -> web.Response:
    return json_response({"page": query_int(request, "page", 1, 1, 100)})


@pytest.fixture
async def pager() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = new_app(max_body_bytes=1024)
    add_routes(app, [("GET", "/pages/", _page)])
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.mark.parametrize(("raw", "page"), [
    ("", 1), ("1", 1), ("12", 12), ("100", 100), ("007", 7), ("0" * 5000 + "9", 9)])
async def test_an_integer_query_value_is_ascii_digits(
        pager: TestClient[web.Request, web.Application], raw: str, page: int) -> None:
    response = await pager.get("/pages/", params={"page": raw})
    assert (response.status, await response.json()) == (200, {"page": page})


@pytest.mark.parametrize("raw", [
    "\u0661\u0662",  # Arabic-Indic 12: int() reads it
    "\uff11\uff12",  # fullwidth 12
    "\u00b9",  # superscript one: str.isdigit() says it is a digit
    "1_0", " 2 ", "2 ", "\t3", "+5", "-0", "-1", "0x1f", "1e2", "1.0", "1,000", "two",
    "0", "101", "9" * 5000])
async def test_any_other_integer_query_value_is_a_400(
        pager: TestClient[web.Request, web.Application], raw: str) -> None:
    response = await pager.get("/pages/", params={"page": raw})
    body = await response.json()
    assert (response.status, body["error"]["code"]) == (400, "INVALID_PARAMETER")
    assert body["error"]["details"]["parameter"] == "page"
    assert set(body["error"]) == {"code", "message", "details"}
