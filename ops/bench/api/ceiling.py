"""The ceiling: a trivial aiohttp JSON handler on uvloop, like svc_orders, that reads the
POST body and answers a small JSON body. `python -m ops.bench.api.ceiling PORT`."""

from __future__ import annotations

import sys

import msgspec
import uvloop
from aiohttp import web

from ops.stack import HOST

CEILING_BODY = msgspec.json.encode({"status": "ok", "order_id": "0" * 36})


def ceiling_server(port: int) -> None:
    """Answer every POST with a small JSON body, on uvloop like svc_orders."""

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=CEILING_BODY, status=201, content_type="application/json")

    async def ready(_: web.Request) -> web.Response:
        return web.Response(body=b'{"ready":true}', content_type="application/json")

    app = web.Application()
    app.router.add_get("/ready/", ready)
    app.router.add_post("/{tail:.*}", answer)
    uvloop.install()
    web.run_app(app, host=HOST, port=port, access_log=None, print=None)


if __name__ == "__main__":
    ceiling_server(int(sys.argv[1]))
