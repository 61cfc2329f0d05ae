"""HTTP plumbing shared by the three services: the one error shape, JSON bodies, probes,
query parameters.

Every failure leaves as `{"error": {"code", "message", "details"}}` with the right status;
no input, however malformed, produces a 500 or a traceback.
"""

from __future__ import annotations

import functools
import hmac
import re
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

import msgspec
import prometheus_client
import structlog
from aiohttp import hdrs, web, web_protocol, web_response

from common.config import Settings

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = structlog.get_logger(__name__)
_encoder = msgspec.json.Encoder()

_STATUS_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN",
                 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 409: "CONFLICT",
                 413: "BODY_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE", 429: "RATE_LIMITED",
                 503: "UNAVAILABLE"}


class ApiError(Exception):
    """A failure the client should see, in the contract's shape."""

    def __init__(self, status: int, code: str, message: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details or {}


def json_response(body: object, status: int = 200) -> web.Response:
    return json_body_response(_encoder.encode(body), status)


def json_body_response(body: bytes, status: int = 200) -> web.Response:
    """A response of JSON encoded already (relayed from another service, say)."""
    return web.Response(body=body, status=status, content_type="application/json")


def error_body(error: ApiError) -> bytes:
    """The contract's error shape as JSON (relayed by another service, or answered)."""
    return _encoder.encode({"error": {"code": error.code, "message": error.message,
                                      "details": error.details}})


def error_response(error: ApiError) -> web.Response:
    return json_body_response(error_body(error), error.status)


class Route(NamedTuple):
    """A route as a service registers it (`add_routes`)."""

    method: str  # "*" for the unrouted fallback
    path: str  # as registered, e.g. "/orders/{order_id}/"
    handler: Handler


# What a route answers when the request matches no other: 404, or 405 with Allow.
UNROUTED = "/{unrouted:.*}"

Admit = Callable[[web.Request], Awaitable[web.StreamResponse | None]]
"""Access control before a route's handler: None lets the request through, an answer
refuses it (`common.access`)."""
Finish = Callable[[web.BaseRequest, web.StreamResponse], None]
"""Adds the headers every answer of a service carries (`common.cors`, `common.access`)."""


class Edge:
    """What every route of a service shares, run as one layer around each handler: access
    control, the contract's error shape for every failure, and the headers each answer
    carries; the unrouted fallback (404, 405 with Allow, the page's CORS preflights).

    Not aiohttp middlewares and response signals: once an application has any, every
    request pays for the middleware chain aiohttp builds around the handler
    (`_fix_request_current_app` included) and a coroutine per signal receiver, a few
    microseconds each on the order API's hot path (python -m ops.bench.api).
    """

    def __init__(self, streams: bool) -> None:
        # `common.access` sets `admission` (the check for each route, None for none);
        # `common.cors` sets `preflight`; both add finishers.
        self.admission: Callable[[Route], Admit | None] | None = None
        self.preflight: Callable[[web.Request], web.StreamResponse | None] | None = None
        self.finishers: list[Finish] = []
        # A handler that prepares its own response (a WebSocket) sends its headers before
        # it returns: with `streams`, answers are finished as aiohttp prepares them.
        self.streams = streams
        self.fallback: web.AbstractResource | None = None  # the route of `unrouted`

    def finish(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        for finish in self.finishers:
            finish(request, response)

    def serve(self, route: Route) -> Handler:
        """`route`'s handler inside the edge."""
        handler = route.handler
        admit: Admit | None = None
        bound = False
        finish_here = not self.streams

        async def serve(request: web.Request) -> web.StreamResponse:
            nonlocal admit, bound
            if not bound:  # access control is set up after some routes are added
                admit = None if self.admission is None else self.admission(route)
                bound = True
            try:
                refusal = None if admit is None else await admit(request)
                response = await handler(request) if refusal is None else refusal
            except ApiError as error:
                response = error_response(error)
            except web.HTTPException as error:
                if error.status < 400:
                    raise
                response = _shaped(error)
            except Exception:
                log.exception("unhandled error", method=request.method, path=request.path)
                response = error_response(ApiError(500, "INTERNAL", "internal error"))
            if finish_here:
                self.finish(request, response)
            return response

        return functools.update_wrapper(serve, handler)  # its marks (`requires`) too

    async def unrouted(self, request: web.Request) -> web.StreamResponse:
        """404 for a path no route has, 405 with Allow for a method its routes lack, and
        the answer to the exchange page's preflight (`common.cors`)."""
        if self.preflight is not None:
            answer = self.preflight(request)
            if answer is not None:
                return answer
        allowed: set[str] = set()
        for resource in request.app.router.resources():
            if resource is not self.fallback:
                _, methods = await resource.resolve(request)
                allowed |= methods
        if allowed:
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        raise web.HTTPNotFound()


def _shaped(error: web.HTTPException) -> web.Response:
    """aiohttp's HTTP error in the contract's shape (a 405 keeps its Allow)."""
    code = _STATUS_CODES.get(error.status, "HTTP_ERROR")
    response = error_response(ApiError(error.status, code, error.reason))
    if hdrs.ALLOW in error.headers:
        response.headers[hdrs.ALLOW] = error.headers[hdrs.ALLOW]
    return response


EDGE = web.AppKey("edge", Edge)

# What every response says of the server: a name, never the Python or aiohttp version.
# aiohttp sets its default on every response it prepares; naming ours there costs no
# request anything.
SERVER_NAME = "exchange-core"
setattr(web_response, "SERVER_SOFTWARE", SERVER_NAME)  # noqa: B010


def new_app(max_body_bytes: int, streams: bool = False) -> web.Application:
    """An application whose routes (`add_routes`) run inside its `Edge`; `streams` if
    some handler prepares its own response (see `Edge`)."""
    app = web.Application(client_max_size=max_body_bytes)
    edge = app[EDGE] = Edge(streams)
    if streams:
        async def finish(request: web.BaseRequest, response: web.StreamResponse) -> None:
            edge.finish(request, response)

        app.on_response_prepare.append(finish)
    edge.fallback = app.router.add_route(
        "*", UNROUTED, edge.serve(Route("*", UNROUTED, edge.unrouted))).resource
    return app


def _shaped_protocol_error(self: web_protocol.RequestHandler, request: web.BaseRequest,
                           status: int = 500, exc: BaseException | None = None,
                           message: str | None = None) -> web.StreamResponse:
    """aiohttp's answer to a request it cannot parse (a too-long URL or header, a broken
    request line), in the contract's shape instead of plain text that echoes the input.

    These failures happen before routing, so no route (nor its `Edge`) sees them and
    aiohttp offers no hook: `RequestHandler.handle_error` is replaced below, once, for
    every service.
    """
    log.warning("unparsable request", status=status, reason=type(exc).__name__)
    if request.writer.output_size > 0:  # a response has begun: only closing is left
        raise ConnectionError("response already started; cannot send the error")
    if status >= 500:
        error = ApiError(status, "INTERNAL", "internal error")
    else:
        error = ApiError(status, _STATUS_CODES.get(status, "BAD_REQUEST"),
                         "the HTTP request could not be parsed",
                         {"reason": type(exc).__name__} if exc is not None else {})
    response = error_response(error)
    response.force_close()
    return response


setattr(web_protocol.RequestHandler, "handle_error", _shaped_protocol_error)  # noqa: B010


async def read_json(request: web.Request, schema: type[T]) -> T:
    """Decode and validate the request body as `schema` or raise a 400/413 `ApiError`."""
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "BODY_TOO_LARGE", "request body is too large") from None
    if not body:
        raise ApiError(400, "INVALID_JSON", "request body is empty")
    return decode(body, schema)


def decode(body: bytes | str, schema: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=schema)
    except msgspec.ValidationError as error:
        raise ApiError(400, "VALIDATION_ERROR", str(error)) from None
    except msgspec.DecodeError as error:
        raise ApiError(400, "INVALID_JSON", f"malformed JSON: {error}") from None
    except RecursionError:  # msgspec walks nested values it skips (unknown fields) by recursion
        raise ApiError(400, "INVALID_JSON", "JSON is nested too deeply") from None


def add_routes(app: web.Application, routes: list[tuple[str, str, Handler]]) -> None:
    """Register each (method, path, handler), inside the app's `Edge`, with and without
    its trailing slash."""
    edge = app[EDGE]
    for method, path, handler in routes:
        served = edge.serve(Route(method, path, handler))
        app.router.add_route(method, path, served)
        if path.endswith("/") and path != "/":
            app.router.add_route(method, path.rstrip("/"), served)
    # Routes of the same first path part are tried in the order they were added: the
    # fallback, which matches every path, goes back to the end.
    assert edge.fallback is not None, "new_app adds it"
    app.router.unindex_resource(edge.fallback)
    app.router.index_resource(edge.fallback)


def add_probes(app: web.Application, ready: Callable[[], bool], settings: Settings) -> None:
    """/health/ (process alive), /ready/ (dependencies up), /metrics (prometheus).

    Metrics tell an outsider a lot (order flow, users' activity through rates): with
    `EX_METRICS_TOKEN` set, /metrics asks for `Authorization: Bearer <token>`; without
    it, /metrics is served only while auth is off (when every service listens on
    loopback alone) and refused with auth on.
    """
    expected = (None if settings.metrics_token is None
                else f"Bearer {settings.metrics_token}".encode())

    async def health(_: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readiness(_: web.Request) -> web.Response:
        is_ready = ready()
        return json_response({"ready": is_ready}, 200 if is_ready else 503)

    async def metrics(request: web.Request) -> web.Response:
        if expected is not None:
            given = request.headers.get(hdrs.AUTHORIZATION, "").encode()
            if not hmac.compare_digest(given, expected):
                raise ApiError(401, "AUTH_REQUIRED", "/metrics needs its bearer token")
        elif settings.auth == "on":
            raise ApiError(403, "PERMISSION_DENIED",
                           "set EX_METRICS_TOKEN to serve /metrics while auth is on")
        return web.Response(body=prometheus_client.generate_latest(),
                            headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})

    add_routes(app, [("GET", "/health/", health), ("GET", "/ready/", readiness),
                     ("GET", "/metrics", metrics)])


# C0 and C1 control characters (NUL among them): no identifier or filter needs one, and
# PostgreSQL cannot store NUL in text.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def has_control_characters(text: str) -> bool:
    return _CONTROL_CHARACTERS.search(text) is not None


MAX_TEXT = 64  # longest text a query parameter holds unless its reader says otherwise


def invalid(name: str, message: str, value: str) -> ApiError:
    """The 400 of a query parameter that is there but wrong."""
    return ApiError(400, "INVALID_PARAMETER", message, {"parameter": name, "value": value})


def query_text(request: web.Request, name: str, max_length: int = MAX_TEXT) -> str | None:
    """A text query parameter; absent and empty are the same."""
    raw = request.query.get(name)
    if not raw:
        return None
    if len(raw) > max_length:
        raise invalid(name, f"{name} must be at most {max_length} characters", raw[:max_length])
    if has_control_characters(raw):
        raise invalid(name, f"{name} must not contain control characters", raw.encode(
            "unicode_escape").decode("ascii"))
    return raw


# A UUID's text form (8-4-4-4-12 hex digits, any case), what OpenAPI's `format: uuid`
# means: `uuid.UUID` alone would also read braces, "urn:uuid:" and bare hex digits.
UUID_TEXT = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_UUID_TEXT = re.compile(UUID_TEXT)


def parse_uuid(raw: str) -> str | None:
    """`raw` in canonical form (lower case, as the services store ids), or None if it
    is not a UUID's text form."""
    return raw.lower() if _UUID_TEXT.fullmatch(raw) else None  # str(UUID(raw)), 2 µs less


def query_uuid(request: web.Request, name: str) -> str | None:
    """A UUID query parameter in canonical form."""
    raw = query_text(request, name)
    if raw is None:
        return None
    canonical = parse_uuid(raw)
    if canonical is None:
        raise invalid(name, f"{name} must be a UUID", raw)
    return canonical


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high], or a 400 naming it.

    Only ASCII digits, as the contract writes numbers: `int()` alone would also read
    other scripts' digits ("١٢"), underscores ("1_0"), a sign ("+5") and surrounding
    white space (" 2 ").
    """
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()):  # isdigit alone takes "١٢" and "¹"
        raise ApiError(400, "INVALID_PARAMETER", f"{name} must be a whole number in "
                       "ASCII digits", {"parameter": name})
    digits = raw.lstrip("0")
    # Past the digits of `high`, out of range: int() would refuse a long enough one.
    value = int(digits or "0") if len(digits) <= len(str(high)) else high + 1
    if not low <= value <= high:
        raise ApiError(400, "INVALID_PARAMETER", f"{name} must be between {low} and {high}",
                       {"parameter": name})
    return value


def uuid_path(request: web.Request, name: str) -> str:
    """The path parameter `name` as a canonical UUID string, or a 400 naming it."""
    raw = request.match_info[name]
    canonical = parse_uuid(raw)
    if canonical is None:
        raise ApiError(400, f"INVALID_{name.upper()}", f"{name} must be a UUID", {name: raw})
    return canonical
