"""Cross-origin access for the exchange page, which svc_stream serves on its own port and
which calls svc_orders and svc_trades on theirs.

Only the page's origin is let in: an origin on `EX_STREAM_PORT`, and with auth off (when
the services listen on loopback only) only a loopback one, so no other web site a user
visits can drive a local exchange from their browser. With auth on, a request still has
to be signed with a key only its user holds: the browser lets the page send it, the key
decides. The page's preflights (`OPTIONS`, which no route takes) are answered by the unrouted
fallback (`common.http.Edge`; any other origin's get the usual 405); every answer to the
page carries the headers that let it read the answer.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from common.access import ACCESS_KEY, ACCESS_SIGN, ACCESS_TIMESTAMP
from common.config import Settings
from common.http import EDGE

ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE"
ALLOW_HEADERS = ", ".join(("Content-Type", "Idempotency-Key", ACCESS_KEY, ACCESS_TIMESTAMP,
                           ACCESS_SIGN))
EXPOSE_HEADERS = "RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After"
MAX_AGE = "600"  # seconds a browser may keep a preflight's answer


def page_origin(origin: str, settings: Settings) -> bool:
    """Whether `origin` (an Origin header) is the exchange page's."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or port != settings.stream_port:
        return False
    if settings.auth == "on":
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allow_page(app: web.Application, settings: Settings) -> None:
    """Let the exchange page call `app` from the browser."""

    def preflight(request: web.Request) -> web.StreamResponse | None:
        origin = request.headers.get(hdrs.ORIGIN)
        if (request.method == hdrs.METH_OPTIONS and origin is not None
                and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
                and page_origin(origin, settings)):
            return web.Response(status=204, headers={
                hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin,
                hdrs.ACCESS_CONTROL_ALLOW_METHODS: ALLOW_METHODS,
                hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOW_HEADERS,
                hdrs.ACCESS_CONTROL_MAX_AGE: MAX_AGE, hdrs.VARY: "Origin"})
        return None

    def headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and page_origin(origin, settings):
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = EXPOSE_HEADERS
            response.headers[hdrs.VARY] = "Origin"

    edge = app[EDGE]
    edge.preflight = preflight
    edge.finishers.append(headers)
