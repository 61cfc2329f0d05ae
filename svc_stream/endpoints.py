"""The three WebSocket endpoints (the contract's feeds on :8002), all public: the private
channel is opened by an `auth` message on `/ws/`, after the upgrade.

Whatever can be refused is refused before the upgrade, as an HTTP error in the contract's
shape: a bad query (400), or a connection over `EX_WS_MAX_CLIENTS` (503
`TOO_MANY_CLIENTS`). After the upgrade, problems are WebSocket messages or close codes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager

from aiohttp import web

from common.config import Settings
from common.http import ApiError, query_int
from common.instruments import DEFAULT_SYMBOL
from svc_stream import metrics
from svc_stream.candles import CandleSource
from svc_stream.client import CLOSE_TIMEOUT, Client, Flusher
from svc_stream.market_cache import MarketCache
from svc_stream.private import Gate
from svc_stream.protocol import MAX_DEPTH, Subscribe
from svc_stream.relay import Relay
from svc_stream.session import Session, serve

SETTINGS = web.AppKey("settings", Settings)
SYMBOLS: web.AppKey[Collection[str]] = web.AppKey("symbols")
RELAY = web.AppKey("relay", Relay)
MARKET_CACHE = web.AppKey("market_cache", MarketCache)
SESSIONS: web.AppKey[set[Session]] = web.AppKey("sessions")
GATE = web.AppKey("gate", Gate)  # only with auth on
CANDLE_SOURCE = web.AppKey("candle_source", CandleSource)

MAX_FRAME = 16 * 1024  # bytes in one client frame: the largest request fits


class Capacity:
    """Connections counted from before their upgrade, so a burst cannot overshoot; the
    peak is the most open at once since `memory` last handed memory back."""

    def __init__(self, limit: int) -> None:
        self.limit, self.open, self.peak = limit, 0, 0

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a place for one connection, or raise the 503 that refuses it."""
        if self.open >= self.limit:
            metrics.REFUSED.inc()
            raise ApiError(503, "TOO_MANY_CLIENTS",
                           f"this server already has {self.limit} WebSocket clients; "
                           "try again later", {"max_clients": self.limit})
        self.open += 1
        self.peak = max(self.peak, self.open)
        metrics.CLIENTS.inc()
        try:
            yield
        finally:
            self.open -= 1
            metrics.CLIENTS.dec()


CAPACITY = web.AppKey("capacity", Capacity)
FLUSHER = web.AppKey("flusher", Flusher)


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
    with request.app[CAPACITY].admit():
        return await _upgrade(request, initial)


async def _upgrade(request: web.Request, initial: Subscribe | None) -> web.WebSocketResponse:
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
    client = Client(ws, stream, request.transport, app[SETTINGS].ws_queue, app[FLUSHER])
    session = Session(client, app[RELAY], app[MARKET_CACHE], app[SYMBOLS], app.get(GATE),
                      request.remote or "unknown", app[CANDLE_SOURCE])
    app[SESSIONS].add(session)
    try:
        await serve(request, ws, session, initial)
    finally:
        app[SESSIONS].discard(session)
    return ws
