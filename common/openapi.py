"""OpenAPI 3.1 documents generated from the msgspec schemas the services really use.

Each service lists its operations once (`Operation`); bodies and answers are msgspec
types, so the document cannot drift from the code. Request bodies are lenient types
(numbers or decimal strings, any-case words), so their fields carry the exact rule as
`Meta(extra_json_schema=...)`, built here from the same enums and instrument the
validation uses: a value the document allows is accepted, one it refuses is refused.
Where a rule is the instrument's (tick, bounds, lot), the document states the default
instrument's. Served at `/openapi.json`, for the service's mode: with `EX_AUTH=on` it
names the signing headers (three `apiKey` security schemes, all required together), the
operations that need no key, the least role of each other one, the 401/403/429 answers
and the RateLimit-* headers of every answer; with auth off, none of that, and no
operation that exists only with auth on.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from aiohttp import web

from common.access import ACCESS_KEY, ACCESS_SIGN, ACCESS_TIMESTAMP, DOCUMENT, default_role
from common.config import Settings
from common.http import MAX_TEXT, UUID_TEXT, add_routes, json_response
from common.instruments import Instrument
from common.keys import Role
from common.listing import DEFAULT_PAGE_SIZE, MAX_CURSOR, MAX_PAGE, MAX_PAGE_SIZE
from common.messages import OrderStatus

REF = "#/components/schemas/{name}"
UUID = {"type": "string", "format": "uuid", "pattern": f"^{UUID_TEXT}$"}
# What `has_control_characters` refuses: identifiers and filters are plain text.
PLAIN_TEXT = "[^\\u0000-\\u001f\\u007f-\\u009f]"


def any_case(words: Iterable[str]) -> str:
    """A pattern matching exactly `words`, in any ASCII case ("buy" -> "[Bb][Uu][Yy]")."""
    options = ("".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c)
                       for c in word) for word in words)
    return f"^(?:{'|'.join(options)})$"


def any_case_enum(kind: type[enum.Enum]) -> dict[str, Any]:
    values = [str(member.value) for member in kind]
    return {"type": "string", "pattern": any_case(values), "examples": values}


def _up_to(high: int) -> str:
    """A pattern of the whole numbers 1..`high`, without leading zeros."""
    digits = str(high)
    options = [f"[1-9][0-9]{{0,{len(digits) - 2}}}"] if len(digits) > 1 else []
    for i, digit in enumerate(digits):
        low = 1 if i == 0 else 0
        if int(digit) > low:
            rest = len(digits) - i - 1
            options.append(f"{digits[:i]}[{low}-{int(digit) - 1}][0-9]{{{rest}}}")
    options.append(digits)
    return "|".join(options)


def quantity_schema(instrument: Instrument) -> dict[str, Any]:
    """A whole quantity within the instrument's bounds, as a number or decimal text."""
    if instrument.lot != 1 or instrument.min_quantity != 1:
        raise ValueError("the document states quantities of lot 1 from 1 only")
    high = instrument.max_quantity
    return {"oneOf": [
        {"type": "integer", "minimum": 1, "maximum": high},
        {"type": "string", "pattern": f"^0*(?:{_up_to(high)})(?:\\.0+)?$"}],
        "description": f"whole, 1 to {high:,} (the default instrument's bounds; "
                       "other instruments have their own lot and bounds)"}


def price_schema(instrument: Instrument) -> dict[str, Any]:
    """A price on the instrument's grid, as a number or decimal text.

    Exact for grids whose tick is one unit, from one tick to the largest price below a
    power of ten (the default instrument: 0.01 to 999999.99); others are refused.
    """
    decimals, top = instrument.decimals, instrument.max_price + 1
    whole_digits = len(str(top)) - 1 - decimals
    if (instrument.tick != 1 or instrument.min_price != 1 or decimals < 1
            or top != 10 ** (whole_digits + decimals) or whole_digits < 1):
        raise ValueError("the document states prices of unit ticks up to a power of ten")
    tick, highest = instrument.tick_size, instrument.format_price(instrument.max_price)
    fraction = f"(?:\\.[0-9]{{1,{decimals}}}0*)?"
    smallest = "|".join("0" * zeros + "[1-9]" + "[0-9]?" * (decimals - zeros - 1)
                        for zeros in range(decimals))
    text = (f"^(?:0*[1-9][0-9]{{0,{whole_digits - 1}}}{fraction}"
            f"|0+\\.(?:{smallest})0*)$")
    return {"oneOf": [
        {"type": "number", "minimum": float(tick), "maximum": float(highest),
         "multipleOf": float(tick)},
        {"type": "string", "pattern": text}],
        "description": f"a multiple of {tick} from {tick} to {highest} (the default "
                       "instrument's grid; other instruments have their own)"}


@dataclass(frozen=True)
class Param:
    """A query parameter: what it means and the exact values its reader accepts.

    An empty value is the same as none (`query_text`): every parameter is optional and
    allows the empty value.
    """

    description: str
    schema: dict[str, Any]


def text_param(description: str, max_length: int = MAX_TEXT) -> Param:
    return Param(description, {"type": "string", "maxLength": max_length,
                               "pattern": f"^{PLAIN_TEXT}*$"})


def int_param(description: str, low: int, high: int, default: int) -> Param:
    return Param(description, {"type": "integer", "minimum": low, "maximum": high,
                               "default": default})


PAGE_QUERY = {
    "page": int_param("page number", 1, MAX_PAGE, 1),
    "page_size": int_param("rows per page", 1, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE),
    "cursor": text_param("next_cursor of the previous page: keyset paging for deep pages; "
                         "a cursor this listing did not issue is a 400", MAX_CURSOR),
}
SYMBOL_QUERY = text_param("instrument symbol")
SIDE_QUERY = Param("buy or sell (any case), or 1 / -1",
                   {"type": "string", "pattern": any_case(["buy", "sell", "1", "-1"])})
ORDER_LIST_QUERY = {
    "status": Param("order status (any case)", any_case_enum(OrderStatus)),
    "side": SIDE_QUERY,
    "user_id": Param("UUID of the user", UUID),
    "symbol": SYMBOL_QUERY,
    "client_order_id": text_param("the client's order id"),
    **PAGE_QUERY,
}


class ErrorDetail(msgspec.Struct):
    code: str
    message: str
    details: dict[str, Any]


class ErrorBody(msgspec.Struct):
    """Every failure, whatever the service: `{"error": {"code", "message", "details"}}`."""

    error: ErrorDetail


# The failures an operation names (each an `ErrorBody`); any other is the document's
# `default` answer.
FAILURES = {
    400: "invalid input: `code` says what, `details` names the field or parameter",
    401: "no valid credentials: `AUTH_REQUIRED`, `INVALID_KEY`, `INVALID_SIGNATURE` (also "
         "for an unknown or revoked key), `TIMESTAMP_OUT_OF_WINDOW`, `REPLAYED_REQUEST`; "
         "nothing changed",
    403: "`PERMISSION_DENIED`: the key's role is not enough, or it names another user; "
         "nothing changed",
    404: "no such id (or symbol)",
    409: "the state forbids it (not live, already settled); nothing changed",
    413: "request body too large",
    429: "`RATE_LIMITED`: over the limit of the key (or, without one, of the client "
         "address); `Retry-After` says when to try again",
    503: "a dependency is down or the journal did not confirm: retry",
}
# How a request gets in with auth on: "key" signed with a key (of at least the
# operation's role), "public" by anyone (counted per client address), "probe" by anyone
# and never counted (health checks and metric scrapes).
Access = Literal["key", "public", "probe"]
SECURITY_SCHEMES = {
    "accessKey": {"type": "apiKey", "in": "header", "name": ACCESS_KEY,
                  "description": "the key id"},
    "accessTimestamp": {"type": "apiKey", "in": "header", "name": ACCESS_TIMESTAMP,
                        "description": "milliseconds since the epoch, within EX_AUTH_WINDOW "
                                       "(default 5 s) of the server's clock"},
    "accessSign": {"type": "apiKey", "in": "header", "name": ACCESS_SIGN,
                   "description": "lowercase hex HMAC-SHA256 under the key's secret of "
                                  "timestamp + METHOD + path with query string + body; "
                                  "each signature is accepted once"},
}
# All three headers together.
SIGNED: list[dict[str, list[str]]] = [{name: [] for name in SECURITY_SCHEMES}]
_WHOLE = {"type": "integer", "minimum": 0}
RATE_HEADERS = {
    "RateLimit-Limit": {"description": "requests allowed in the window", "required": True,
                        "schema": _WHOLE},
    "RateLimit-Remaining": {"description": "requests left in the window", "required": True,
                            "schema": _WHOLE},
    "RateLimit-Reset": {"description": "seconds until the window frees up",
                        "required": True, "schema": _WHOLE},
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "required": True,
                               "schema": {"type": "integer", "minimum": 1}}}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    answers: dict[int, Any]  # status -> msgspec type of the JSON body
    body: Any = None
    query: dict[str, Param] = field(default_factory=dict)
    failures: tuple[int, ...] = (400,)  # keys of FAILURES, in either mode
    access: Access = "key"  # with auth on
    role: Role | None = None  # "key" access: the least role (`common.access.requires`)
    auth_only: bool = False  # served only with auth on

    @property
    def least_role(self) -> Role:
        return self.role or default_role(self.method)


class Health(msgspec.Struct):
    status: Literal["ok"]


class Readiness(msgspec.Struct):
    ready: bool


# What every service serves besides its own routes (`common.http.add_probes`, and the
# document itself).
COMMON_OPERATIONS = [
    Operation("GET", "/health/", "Liveness: the process answers", {200: Health},
              failures=(), access="probe"),
    Operation("GET", "/ready/", "Readiness: dependencies up, state recovered",
              {200: Readiness, 503: Readiness}, failures=(), access="probe"),
    Operation("GET", "/metrics", "Prometheus metrics; with EX_METRICS_TOKEN set, they need "
              "`Authorization: Bearer <token>` (401 without); with auth on and no token, 403",
              {200: str}, failures=(401, 403), access="probe"),
    Operation("GET", DOCUMENT, "This document", {200: dict[str, Any]}, failures=(),
              access="public"),
]


def document(title: str, operations: list[Operation], auth: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `operations` with auth on or off; every 4xx/5xx
    answers `ErrorBody`.

    Path parameters are ids: the services answer 400 to anything but a UUID. An answer
    of type `str` is plain text (the metrics).
    """
    operations = [op for op in operations if auth or not op.auth_only]
    types = [ErrorBody, *(t for op in operations for t in op.answers.values() if t is not str),
             *(op.body for op in operations if op.body is not None)]
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    ref_of = dict(zip(map(id, types), map(_plain_ref, refs), strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        failures = set(op.failures)
        if auth and op.access != "probe":
            failures |= {429} if op.access == "public" else {401, 403, 429}
        responses = {str(status): {"description": str(status), "content": _content(
            ref_of, kind)} for status, kind in op.answers.items()}
        failure = _content(ref_of, ErrorBody)
        responses |= {str(status): {"description": FAILURES[status], "content": failure}
                      for status in sorted(failures)}
        responses["default"] = {"description": "another failure", "content": failure}
        entry: dict[str, Any] = {"summary": op.summary, "responses": responses}
        if auth:
            _describe_access(entry, op)
        parameters = [{"name": name, "in": "path", "required": True, "schema": UUID}
                      for name in _path_names(op.path)]
        parameters += [{"name": name, "in": "query", "required": False,
                        "allowEmptyValue": True, "description": param.description,
                        "schema": param.schema}
                       for name, param in op.query.items()]
        if parameters:
            entry["parameters"] = parameters
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": ref_of[id(op.body)]}}}
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    spec: dict[str, Any] = {"openapi": "3.1.0", "info": {"title": title, "version": "1.0"},
                            "paths": paths, "components": {"schemas": components}}
    if auth:
        spec["components"]["securitySchemes"] = SECURITY_SCHEMES
        spec["components"]["headers"] = RATE_HEADERS | RETRY_AFTER
        spec["security"] = SIGNED
    return spec


def _content(ref_of: dict[int, Any], kind: Any) -> dict[str, Any]:
    if kind is str:
        return {"text/plain": {"schema": {"type": "string"}}}
    return {"application/json": {"schema": ref_of[id(kind)]}}


def _describe_access(entry: dict[str, Any], op: Operation) -> None:
    """With auth on: who may call `op`, and the headers of its answers."""
    if op.access != "key":
        entry["security"] = []  # no key needed
        entry["description"] = ("public: no key needed" if op.access == "public" else
                                "a probe: no key needed, never rate limited")
    else:
        entry["description"] = f"needs a key with the {op.least_role} role at least"
    if op.access == "probe":
        return
    for status, response in entry["responses"].items():
        names = [*RATE_HEADERS, *(RETRY_AFTER if status == "429" else ())]
        response["headers"] = {name: {"$ref": f"#/components/headers/{name}"}
                               for name in names}


def add_openapi(app: web.Application, title: str, operations: list[Operation],
                settings: Settings) -> None:
    """Serve the document of the service's mode at /openapi.json (built once)."""
    spec = document(title, operations, settings.auth == "on")

    async def serve(_: web.Request) -> web.Response:
        return json_response(spec)

    add_routes(app, [("GET", DOCUMENT, serve)])


def _plain_ref(schema: dict[str, Any]) -> dict[str, Any]:
    """A body's rules beside its `$ref` (an annotated Struct) as `allOf`, which every
    OpenAPI tool reads; a bare `$ref` as it is."""
    if "$ref" not in schema or len(schema) == 1:
        return schema
    rest = {key: value for key, value in schema.items() if key != "$ref"}
    return {"allOf": [{"$ref": schema["$ref"]}, rest]}


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]
