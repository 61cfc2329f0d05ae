"""The three WebSocket endpoints (SPEC 4); a bad query is a 400 before any upgrade."""

from __future__ import annotations

from collections.abc import Collection

from aiohttp import web

from common.config import Settings
from common.http import ApiError, query_int
from common.instruments import DEFAULT_SYMBOL
from svc_stream import metrics
from svc_stream.client import CLOSE_TIMEOUT, Client
from svc_stream.protocol import MAX_DEPTH, Subscribe
from svc_stream.relay import Relay
from svc_stream.session import Session, serve
from svc_stream.snapshots import Snapshots

SETTINGS = web.AppKey("settings", Settings)
SYMBOLS: web.AppKey[Collection[str]] = web.AppKey("symbols")
RELAY = web.AppKey("relay", Relay)
SNAPSHOTS = web.AppKey("snapshots", Snapshots)
SESSIONS: web.AppKey[set[Session]] = web.AppKey("sessions")

MAX_FRAME = 16 * 1024  # bytes in one client frame: the largest request fits


async def trades(request: web.Request) -> web.WebSocketResponse:
    """`/ws/trades/?symbol=`: recent trades, then every trade."""
    return await _connect(request, Subscribe(channels=["trades"], symbols=[_symbol(request)]))


async def orderbook(request: web.Request) -> web.WebSocketResponse:
    """`/ws/orderbook/?symbol=&depth=`: the book, then on change and at least every second."""
    symbol = _symbol(request)
    depth = query_int(request, "depth", MAX_DEPTH, 1, MAX_DEPTH)
    return await _connect(request, Subscribe(channels=["orderbook"], symbols=[symbol],
                                             depth=depth))


async def multiplex(request: web.Request) -> web.WebSocketResponse:
    """`/ws/`: feeds chosen with `subscribe` and `unsubscribe` messages."""
    return await _connect(request, None)


def _symbol(request: web.Request) -> str:
    symbol = request.query.get("symbol") or DEFAULT_SYMBOL
    if symbol not in request.app[SYMBOLS]:
        raise ApiError(400, "UNKNOWN_SYMBOL", f"unknown symbol {symbol!r}",
                       {"symbol": symbol})
    return symbol


async def _connect(request: web.Request, initial: Subscribe | None) -> web.WebSocketResponse:
    app = request.app
    # No permessage-deflate: it would compress every message once per client, and the
    # relay's point is to send the same bytes to all of them.
    ws = web.WebSocketResponse(heartbeat=app[SETTINGS].ws_heartbeat, compress=False,
                               max_msg_size=MAX_FRAME, timeout=CLOSE_TIMEOUT)
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "WEBSOCKET_REQUIRED", "this endpoint speaks WebSocket only")
    stream = await ws.prepare(request)
    if request.transport is None:  # the peer left during the handshake
        return ws
    client = Client(ws, stream, request.transport, app[SETTINGS].ws_queue)
    session = Session(client, app[RELAY], app[SNAPSHOTS], app[SYMBOLS])
    app[SESSIONS].add(session)
    metrics.CLIENTS.inc()
    try:
        await serve(request, ws, session, initial)
    finally:
        app[SESSIONS].discard(session)
        metrics.CLIENTS.dec()
    return ws
