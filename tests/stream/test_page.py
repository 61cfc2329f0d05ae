"""The exchange page's files: served from memory under their own names only, with the
types browsers insist on for modules, for anyone (with auth on too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import Settings
from tests.common.auth import SECRET_KEY
from tests.stream.auth import REDIS_DB
from tests.stream.conftest import Client, MakeStream

STATIC = Path(__file__).resolve().parents[2] / "svc_stream" / "static"


@pytest.mark.parametrize("auth", ["off", "on"])
async def test_the_page_and_its_files_are_served_to_anyone(
        make_stream: MakeStream, symbols: list[str], auth: str,
        settings: Settings) -> None:
    limits = settings.redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"  # the auth tests' Redis
    stream: Client = await (make_stream(auth="on", secret_key=SECRET_KEY, redis_url=limits)
                            if auth == "on" else make_stream())
    response = await stream.get("/")
    assert (response.status, response.content_type) == (200, "text/html")
    assert await response.read() == (STATIC / "index.html").read_bytes()
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css"),
                       ("vendor/lightweight-charts.standalone.production.mjs",
                        "text/javascript"), ("vendor/LICENSE-uPlot.txt", "text/plain")):
        response = await stream.get(f"/page/{name}")
        assert (response.status, response.content_type) == (200, kind), name
        assert await response.read() == (STATIC / name).read_bytes()
    config = await (await stream.get("/page/config.json")).json()
    assert config == {"symbols": sorted(["DEFAULT", *symbols]), "auth": auth == "on",
                      "orders_port": 8000, "trades_port": 8001}


async def test_nothing_else_is_reachable(stream: Client) -> None:
    for path in ("/page/../page.py", "/page/%2e%2e/page.py", "/page/vendor/../../app.py",
                 "/page/missing.js", "/page/", "/page/static/index.html"):
        response = await stream.get(path)
        assert response.status == 404, path
        assert (await response.json())["error"]["code"] == "NOT_FOUND"
