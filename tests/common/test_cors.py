"""The exchange page may call the REST services from the browser, and no other site may."""

from __future__ import annotations

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from common.config import Settings
from common.cors import allow_page, page_origin
from common.http import add_routes, json_response, new_app

OFF, ON = Settings(), Settings(auth="on", host="0.0.0.0", secret_key="k" * 32)


@pytest.mark.parametrize(("origin", "settings", "allowed"), [
    ("http://localhost:8002", OFF, True),
    ("http://127.0.0.1:8002", OFF, True),
    ("http://[::1]:8002", OFF, True),
    ("https://localhost:8002", OFF, True),
    ("http://localhost:8003", OFF, False),  # not the page's port
    ("http://localhost", OFF, False),
    ("http://evil.example:8002", OFF, False),  # auth off: loopback pages only
    ("http://192.168.1.20:8002", OFF, False),
    ("http://exchange.example:8002", ON, True),  # auth on: the key decides
    ("file://localhost:8002", ON, False),
    ("null", ON, False),
    ("http://localhost:99999", ON, False),
])
def test_only_the_pages_origin_is_let_in(origin: str, settings: Settings,
                                         allowed: bool) -> None:
    assert page_origin(origin, settings) is allowed


async def test_preflights_and_answers_carry_the_headers_for_the_page_only(
        aiohttp_client: AiohttpClient) -> None:
    app = new_app(1024)
    allow_page(app, OFF)

    async def hello(_: web.Request) -> web.Response:
        return json_response({"hello": "page"}, 201)

    add_routes(app, [("POST", "/orders/", hello)])
    client = await aiohttp_client(app)
    page = "http://localhost:8002"
    preflight = {"Origin": page, "Access-Control-Request-Method": "DELETE",
                 "Access-Control-Request-Headers": "ex-access-key,content-type"}
    response = await client.options("/orders/x/", headers=preflight)
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == page
    assert "DELETE" in response.headers["Access-Control-Allow-Methods"]
    assert "EX-ACCESS-SIGN" in response.headers["Access-Control-Allow-Headers"]

    response = await client.post("/orders/", headers={"Origin": page})
    assert (response.status, response.headers["Access-Control-Allow-Origin"]) == (201, page)
    assert "RateLimit-Remaining" in response.headers["Access-Control-Expose-Headers"]
    response = await client.get("/nowhere/", headers={"Origin": page})  # errors are readable
    assert (response.status, response.headers["Access-Control-Allow-Origin"]) == (404, page)

    other = "http://evil.example:8002"
    response = await client.options("/orders/", headers={**preflight, "Origin": other})
    assert response.status == 405
    assert "Access-Control-Allow-Origin" not in response.headers
    response = await client.post("/orders/", headers={"Origin": other})
    assert "Access-Control-Allow-Origin" not in response.headers
