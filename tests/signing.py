"""A signing client as a user writes it from the contract, kept apart from the server's code so
that the tests check the server against the contract rather than against itself."""

from __future__ import annotations

import hashlib
import hmac
import time

from aiohttp import ClientHandlerType, ClientRequest, ClientResponse, ClientSession
from aiohttp.client_middlewares import ClientMiddlewareType


def sign(secret: str, timestamp: str, method: str, path_qs: str, body: bytes = b"") -> str:
    """Lowercase hex HMAC-SHA256(secret, timestamp + METHOD + path with query + body)."""
    signed = f"{timestamp}{method}{path_qs}".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def now_ms() -> str:
    return str(time.time_ns() // 1_000_000)


def signed_headers(key_id: str, secret: str, method: str, path_qs: str, body: bytes = b"",
                   timestamp: str | None = None) -> dict[str, str]:
    timestamp = timestamp or now_ms()
    return {"EX-ACCESS-KEY": key_id, "EX-ACCESS-TIMESTAMP": timestamp,
            "EX-ACCESS-SIGN": sign(secret, timestamp, method, path_qs, body)}


def signing_middleware(key_id: str, secret: str) -> ClientMiddlewareType:
    """An aiohttp client middleware that signs every request as it is sent."""

    async def middleware(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        body = b"" if request.body == b"" else await request.body.as_bytes()
        request.headers.update(signed_headers(key_id, secret, request.method,
                                              request.url.raw_path_qs, body))
        return await handler(request)

    return middleware


def signing_session(key_id: str, secret: str, base_url: str) -> ClientSession:
    """A ClientSession whose every request is signed with the key."""
    return ClientSession(base_url, middlewares=(signing_middleware(key_id, secret),))
