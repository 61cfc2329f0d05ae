"""OpenAPI 3.1 documents generated from the msgspec schemas the services really use.

Each service lists its operations once (`Operation`); bodies and answers are msgspec
types, so the document cannot drift from the code. Served at `/openapi.json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from common.http import add_routes, json_response

REF = "#/components/schemas/{name}"

PAGE_QUERY = {
    "page": "page number from 1 (default 1)",
    "page_size": "rows per page, 1 to 100 (default 20)",
    "cursor": "next_cursor of the previous page: keyset paging for deep pages",
}
ORDER_LIST_QUERY = {
    "status": "ACTIVE, PARTIALLY_FILLED, FILLED, CANCELLED, REJECTED or EXPIRED",
    "side": "buy or sell (any case), or 1 / -1",
    "user_id": "UUID of the user",
    "symbol": "instrument symbol",
    "client_order_id": "the client's order id",
    **PAGE_QUERY,
}


class ErrorDetail(msgspec.Struct):
    code: str
    message: str
    details: dict[str, Any]


class ErrorBody(msgspec.Struct):
    """Every failure, whatever the service: `{"error": {"code", "message", "details"}}`."""

    error: ErrorDetail


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    answers: dict[int, Any]  # status -> msgspec type of the JSON body
    body: Any = None
    query: dict[str, str] = field(default_factory=dict)  # name -> description


def document(title: str, operations: list[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `operations`; every 4xx/5xx answers `ErrorBody`."""
    types = [ErrorBody, *(t for op in operations for t in op.answers.values()),
             *(op.body for op in operations if op.body is not None)]
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    ref_of = dict(zip(map(id, types), refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        responses = {str(status): {"description": str(status), "content": {
            "application/json": {"schema": ref_of[id(kind)]}}}
            for status, kind in op.answers.items()}
        responses["default"] = {"description": "error", "content": {
            "application/json": {"schema": ref_of[id(ErrorBody)]}}}
        entry: dict[str, Any] = {"summary": op.summary, "responses": responses}
        parameters = [{"name": name, "in": "path", "required": True,
                       "schema": {"type": "string"}}
                      for name in _path_names(op.path)]
        parameters += [{"name": name, "in": "query", "required": False,
                        "description": text, "schema": {"type": "string"}}
                       for name, text in op.query.items()]
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


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]
