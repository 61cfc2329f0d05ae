"""Signing in on a WebSocket as a client does from the contract, and keys to sign with."""

from __future__ import annotations

from typing import Any

from aiohttp import ClientWebSocketResponse
from nats.js.kv import KeyValue

from common import keys
from common.keys import IssuedKey, Role, SecretBox
from tests.common.auth import SECRET_KEY
from tests.signing import now_ms, sign
from tests.stream.market import receive

REDIS_DB = 13  # rate-limit counters of these tests stay out of the other tests' way


async def issue(kv: KeyValue, role: Role = "viewer", user_id: str | None = None) -> IssuedKey:
    return await keys.create_key(kv, SecretBox(SECRET_KEY), role, user_id)


def auth_message(key: IssuedKey, timestamp: str | None = None) -> dict[str, str]:
    """`auth` signed over timestamp + "GET" + "/ws/"."""
    timestamp = timestamp or now_ms()
    return {"type": "auth", "key": key.key_id, "timestamp": timestamp,
            "signature": sign(key.secret, timestamp, "GET", "/ws/")}


async def sign_in(ws: ClientWebSocketResponse, key: IssuedKey) -> Any:
    await ws.send_json(auth_message(key))
    return await receive(ws)


async def subscribe_orders(ws: ClientWebSocketResponse, symbols: list[str]) -> None:
    await ws.send_json({"type": "subscribe", "channels": ["orders"], "symbols": symbols})
    answer = await receive(ws)
    assert answer["type"] == "subscribed", answer
