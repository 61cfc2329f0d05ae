"""Ping, bad frames, bad queries, dead peers and shutdown, on every endpoint."""

import asyncio
import gc
import weakref

import pytest
from aiohttp import ClientSession, WSCloseCode, WSMsgType
from aiohttp.test_utils import TestServer

from common.config import Settings
from ops.bench.ws_abandoned import Abandoned
from svc_stream import endpoints, protocol
from svc_stream.app import create_app
from svc_stream.session import Session
from tests.helpers import eventually
from tests.stream.conftest import Client, MakeStream
from tests.stream.market import receive

ENDPOINTS = ["/ws/trades/", "/ws/orderbook/", "/ws/"]


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_ping_and_bad_frames_keep_the_connection(stream: Client, path: str) -> None:
    ws = await stream.ws_connect(path)
    if path != "/ws/":
        assert (await receive(ws))["type"] == "snapshot"

    await ws.send_str("{not json")
    assert (await receive(ws))["type"] == "error"
    await ws.send_json({"type": "dance"})
    error = await receive(ws)
    assert error["type"] == "error"
    assert "dance" in error["message"]
    await ws.send_json(["ping"])
    assert (await receive(ws))["type"] == "error"
    await ws.send_json({"type": "ping"})
    assert await receive(ws) == {"type": "pong"}
    await ws.send_bytes(b'{"type": "ping"}')
    assert await receive(ws) == {"type": "pong"}
    assert not ws.closed


DEEP = 1000  # levels of nesting, well inside the frame size limit


@pytest.mark.parametrize("frame", [
    "[" * DEEP + "]" * DEEP,
    '{"type": "ping", "x": ' + "[" * DEEP + "]" * DEEP + "}",
    '{"x": ' + '{"a": ' * DEEP + "1" + "}" * DEEP + ', "type": "subscribe"}',
])
async def test_deeply_nested_frames_answer_an_error_and_keep_the_connection(
        stream: Client, frame: str) -> None:
    ws = await stream.ws_connect("/ws/")
    await ws.send_str(frame)
    error = await receive(ws)
    assert error["type"] == "error"
    await ws.send_json({"type": "ping"})
    assert await receive(ws) == {"type": "pong"}


async def test_a_failing_session_closes_with_1011_not_an_http_answer(
        stream: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(frame: str | bytes) -> protocol.Request:
        raise RuntimeError("a bug")

    ws = await stream.ws_connect("/ws/")
    monkeypatch.setattr(protocol, "decode", broken)
    await ws.send_json({"type": "ping"})
    message = await ws.receive(timeout=5)
    assert (message.type, message.data) == (WSMsgType.CLOSE, WSCloseCode.INTERNAL_ERROR)


@pytest.mark.parametrize(("query", "parameter"), [
    ("/ws/orderbook/?depth=0", "depth"), ("/ws/orderbook/?depth=51", "depth"),
    ("/ws/orderbook/?depth=ten", "depth"), ("/ws/orderbook/?depth=%D9%A1%D9%A2", "depth"),
    ("/ws/orderbook/?depth=1_0", "depth"), ("/ws/orderbook/?depth=%2B5", "depth"),
    ("/ws/orderbook/?depth=%205", "depth"), ("/ws/trades/?symbol=NOPE", "symbol"),
    ("/ws/orderbook/?symbol=NOPE", "symbol"),
])
async def test_bad_query_is_a_400_before_the_upgrade(stream: Client, query: str,
                                                      parameter: str) -> None:
    response = await stream.get(query, headers={
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert response.status == 400
    body = await response.json()
    assert body["error"]["code"] in {"INVALID_PARAMETER", "UNKNOWN_SYMBOL"}
    assert parameter in body["error"]["message"]


async def test_plain_http_is_refused_in_the_contract_shape(stream: Client) -> None:
    response = await stream.get("/ws/trades/")
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "WEBSOCKET_REQUIRED"


async def test_dead_peer_is_closed_by_heartbeat(make_stream: MakeStream) -> None:
    stream = await make_stream(ws_heartbeat=0.1)
    ws = await stream.ws_connect("/ws/", autoping=False)
    assert (await ws.receive(timeout=2)).type is WSMsgType.PING  # and no pong from us
    assert (await ws.receive(timeout=2)).type in {WSMsgType.CLOSE, WSMsgType.CLOSED,
                                                  WSMsgType.ERROR}


async def test_shutdown_closes_clients_with_going_away(settings: Settings) -> None:
    server = TestServer(create_app(settings))
    await server.start_server()
    try:
        async with ClientSession() as session:
            ws = await session.ws_connect(server.make_url("/ws/"))
            closing = asyncio.create_task(server.close())
            message = await ws.receive(timeout=5)
            assert (message.type, message.data) == (WSMsgType.CLOSE, WSCloseCode.GOING_AWAY)
            assert message.extra == "server shutting down"
            await closing
    finally:
        await server.close()


async def test_a_peer_that_resets_is_forgotten_at_once(make_stream: MakeStream) -> None:
    """Not one heartbeat period later: aiohttp's heartbeat timer would hold it in memory."""
    stream = await make_stream(ws_heartbeat=60.0)
    host, port = stream.host, stream.port
    assert port is not None
    transport, peer = await asyncio.get_running_loop().create_connection(
        lambda: Abandoned(f"{host}:{port}", "/ws/"), host, port)
    assert await peer.upgraded
    await eventually(lambda: stream.app[endpoints.SESSIONS])
    sessions: set[Session] = stream.app[endpoints.SESSIONS]
    server_side = weakref.ref(next(iter(sessions)).client.ws)
    transport.abort()

    def released() -> bool:
        gc.collect()
        return server_side() is None
    await eventually(released)
