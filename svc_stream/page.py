"""The live exchange page at `GET /`: static files shipped in `svc_stream/static/`.

Plain HTML, CSS and ES modules, no build step; the charting libraries are vendored in
`static/vendor/` (see its README). The files are read once at start-up and served from
memory under fixed names, so no request can reach any other file. `/page/config.json`
tells the page what it cannot know: the instruments, whether auth is on, and the ports of
the REST services it signs requests for.
"""

from __future__ import annotations

from collections.abc import Collection
from importlib import resources

import msgspec
from aiohttp import web

from common.config import Settings
from common.http import ApiError, Handler, add_routes

PREFIX = "/page/"
TYPES = {".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript",
         ".css": "text/css", ".txt": "text/plain", ".md": "text/plain",
         ".json": "application/json"}
# The page loads nothing from elsewhere; it talks to the services of its own host (the
# REST ports differ from this one, hence http: and ws: in connect-src).
POLICY = ("default-src 'self'; connect-src 'self' http: https: ws: wss:; "
          "img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")


class PageConfig(msgspec.Struct, kw_only=True):
    symbols: list[str]
    auth: bool
    orders_port: int
    trades_port: int


def _files() -> dict[str, tuple[bytes, str]]:
    """Every shipped file by its path under `static/`, with its content type."""
    found: dict[str, tuple[bytes, str]] = {}
    root = resources.files("svc_stream") / "static"
    folders = [(root, "")]
    while folders:
        folder, prefix = folders.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                folders.append((entry, f"{prefix}{entry.name}/"))
                continue
            suffix = entry.name[entry.name.rfind("."):]
            if suffix in TYPES:
                found[prefix + entry.name] = (entry.read_bytes(), TYPES[suffix])
    return found


def add_page(app: web.Application, settings: Settings, symbols: Collection[str]) -> list[str]:
    """Serve the page; returns its paths as registered (public with auth on)."""
    files = _files()
    config = msgspec.json.encode(PageConfig(
        symbols=sorted(symbols), auth=settings.auth == "on",
        orders_port=settings.orders_port, trades_port=settings.trades_port))
    files["config.json"] = (config, TYPES[".json"])

    def answer(name: str) -> web.Response:
        found = files.get(name)
        if found is None:
            raise ApiError(404, "NOT_FOUND", "no such page file")
        body, kind = found
        return web.Response(body=body, content_type=kind, headers={
            "Cache-Control": "no-cache", "Content-Security-Policy": POLICY,
            "X-Content-Type-Options": "nosniff"})

    async def index(_: web.Request) -> web.Response:
        return answer("index.html")

    async def asset(request: web.Request) -> web.Response:
        return answer(request.match_info["name"])

    routes: list[tuple[str, str, Handler]] = [("GET", "/", index),
                                              ("GET", PREFIX + "{name:.+}", asset)]
    add_routes(app, routes)
    return [path for _, path, _ in routes]
