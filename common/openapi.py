"""OpenAPI 3.1 documents generated from the msgspec schemas the services really use.

Each service lists its operations once (`Operation`); bodies and answers are msgspec
types, so the document cannot drift from the code. Request bodies are lenient types
(numbers or decimal strings, any-case words), so their fields carry the exact rule as
`Meta(extra_json_schema=...)`, built here from the same enums and instrument the
validation uses: a value the document allows is accepted, one it refuses is refused.
Where a rule is the instrument's (tick, bounds, lot), the document states the default
instrument's. Served at `/openapi.json`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from common.http import MAX_TEXT, UUID_TEXT, add_routes, json_response
from common.instruments import Instrument
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


# The failures an operation names (each an `ErrorBody`); any other, e.g. 401, 403 or 429
# with authentication on, is the document's `default` answer.
FAILURES = {
    400: "invalid input: `code` says what, `details` names the field or parameter",
    404: "no such id (or symbol)",
    409: "the state forbids it (not live, already settled); nothing changed",
    413: "request body too large",
    503: "a dependency is down or the journal did not confirm: retry",
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    answers: dict[int, Any]  # status -> msgspec type of the JSON body
    body: Any = None
    query: dict[str, Param] = field(default_factory=dict)
    failures: tuple[int, ...] = (400,)  # keys of FAILURES


def document(title: str, operations: list[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `operations`; every 4xx/5xx answers `ErrorBody`.

    Path parameters are ids: the services answer 400 to anything but a UUID.
    """
    types = [ErrorBody, *(t for op in operations for t in op.answers.values()),
             *(op.body for op in operations if op.body is not None)]
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    ref_of = dict(zip(map(id, types), map(_plain_ref, refs), strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        responses = {str(status): {"description": str(status), "content": {
            "application/json": {"schema": ref_of[id(kind)]}}}
            for status, kind in op.answers.items()}
        failure = {"application/json": {"schema": ref_of[id(ErrorBody)]}}
        responses |= {str(status): {"description": FAILURES[status], "content": failure}
                      for status in op.failures}
        responses["default"] = {"description": "another failure", "content": failure}
        entry: dict[str, Any] = {"summary": op.summary, "responses": responses}
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
    return {"openapi": "3.1.0", "info": {"title": title, "version": "1.0"},
            "paths": paths, "components": {"schemas": components}}


def add_openapi(app: web.Application, title: str, operations: list[Operation]) -> None:
    """Serve the document at /openapi.json (built once)."""
    spec = document(title, operations)

    async def serve(_: web.Request) -> web.Response:
        return json_response(spec)

    add_routes(app, [("GET", "/openapi.json", serve)])


def _plain_ref(schema: dict[str, Any]) -> dict[str, Any]:
    """A body's rules beside its `$ref` (an annotated Struct) as `allOf`, which every
    OpenAPI tool reads; a bare `$ref` as it is."""
    if "$ref" not in schema or len(schema) == 1:
        return schema
    rest = {key: value for key, value in schema.items() if key != "$ref"}
    return {"allOf": [{"$ref": schema["$ref"]}, rest]}


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]
