"""One WebSocket connection: requests in, its subscriptions' messages out.

All three endpoints are sessions; `/ws/trades/` and `/ws/orderbook/` start subscribed to
the feed named by their query (and send no acknowledgement, so the original system's
clients see only market data), while `/ws/` starts with none and acknowledges each
`subscribe`/`unsubscribe`. With auth on, a session that signed in (`auth`, see `private`)
may subscribe to its user's private `orders` channel too, until it signs out by its key's
revocation.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Collection

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from common.keys import Identity
from svc_stream import candles, protocol
from svc_stream.candles import CandleSource
from svc_stream.client import Client, text_frame
from svc_stream.feeds import (
    BookSubscription,
    CandleSubscription,
    OrdersSubscription,
    Subscription,
    TradeSubscription,
)
from svc_stream.market_cache import MarketCache
from svc_stream.private import Gate
from svc_stream.protocol import PRIVATE, Auth, Channel, Ping, Subscribe, Unsubscribe
from svc_stream.relay import Relay

log = structlog.get_logger(__name__)

PONG = text_frame(protocol.PONG)


class Session:
    def __init__(self, client: Client, relay: Relay, market_cache: MarketCache,
                 symbols: Collection[str], gate: Gate | None = None,
                 address: str = "unknown", candle_source: CandleSource | None = None) -> None:
        """`gate` (auth on) signs the session in; `address` is the client's, for the
        failed-authentication limit; `candle_source` serves the candles channel."""
        self.client, self.relay, self.market_cache = client, relay, market_cache
        self.candle_source = candle_source
        self.symbols = symbols  # the instruments one may subscribe to
        self.gate, self.address = gate, address
        self.identity: Identity | None = None  # set by a successful `auth`
        self.subs: dict[tuple[Channel, str], Subscription] = {}

    async def run(self, ws: web.WebSocketResponse, initial: Subscribe | None) -> None:
        """Serve until the peer leaves or the connection is closed from our side."""
        if initial is not None:
            await self.subscribe(initial, acknowledge=False)
        async for message in ws:
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await self.handle(message.data)
            elif message.type is WSMsgType.ERROR:
                break

    async def handle(self, frame: str | bytes) -> None:
        try:
            request = protocol.decode(frame)
            match request:
                case Ping():
                    self.client.send(PONG)
                case Subscribe():
                    await self.subscribe(request)
                case Unsubscribe():
                    self.unsubscribe(request)
                case Auth():
                    await self.sign_in(request)
        except protocol.BadRequest as error:
            self.client.send(text_frame(protocol.error(str(error), error.code)))

    async def sign_in(self, request: Auth) -> None:
        if self.gate is None:
            raise protocol.BadRequest("authentication is off on this server (EX_AUTH=off): "
                                      "there are no private channels", "AUTH_DISABLED")
        identity = await self.gate.sign_in(self.address, request)
        if self.identity is not None and self.identity.user_id != identity.user_id:
            self._leave_private()  # another user now: the last one's orders are not theirs
        self.identity = identity
        self.client.send(text_frame(protocol.encode(protocol.Authenticated(
            user_id=identity.user_id, role=identity.role))))

    def sign_out(self, reason: str) -> None:
        """The key is no longer valid: end the private subscriptions and say why."""
        self.identity = None
        self._leave_private()
        self.client.send(text_frame(protocol.error(reason, "KEY_REVOKED")))

    def _leave_private(self) -> None:
        for key in [key for key in self.subs if key[0] in PRIVATE]:
            self.relay.remove(self.subs.pop(key))

    async def subscribe(self, request: Subscribe, acknowledge: bool = True) -> None:
        """Register the new feeds (buffering), read their snapshots, then go live."""
        self._check_symbols(request.symbols)
        if self.identity is None and PRIVATE.intersection(request.channels):
            raise protocol.BadRequest("the orders channel needs an `auth` message first",
                                      "AUTH_REQUIRED")
        new: list[Subscription] = []
        for channel, symbol in itertools.product(request.channels, request.symbols):
            if (channel, symbol) in self.subs:
                continue
            sub = self._new(channel, symbol, request.depth)
            self.subs[channel, symbol] = sub
            self.relay.add(sub)
            new.append(sub)
        if any(isinstance(sub, OrdersSubscription) for sub in new):
            await self.relay.announce()  # svc_orders builds the user's updates from now on
        if acknowledge:
            self.client.send(text_frame(protocol.encode(protocol.Subscribed(
                channels=request.channels, symbols=request.symbols))))
        snapshots = await asyncio.gather(*(self._snapshot(sub) for sub in new))
        for sub, (seq, snapshot) in zip(new, snapshots, strict=True):
            sub.start(seq, None if snapshot is None else text_frame(snapshot))

    def _new(self, channel: Channel, symbol: str, depth: int) -> Subscription:
        match channel:
            case "trades":
                return TradeSubscription(self.client, symbol)
            case "orderbook":
                return BookSubscription(self.client, symbol, depth)
            case "candles":
                return CandleSubscription(self.client, symbol)
            case "orders":
                assert self.identity is not None, "checked by `subscribe`"
                return OrdersSubscription(self.client, symbol, self.identity.user_id)

    def unsubscribe(self, request: Unsubscribe) -> None:
        self._check_symbols(request.symbols)
        for key in itertools.product(request.channels, request.symbols):
            sub = self.subs.pop(key, None)
            if sub is not None:
                self.relay.remove(sub)
        self.client.send(text_frame(protocol.encode(protocol.Unsubscribed(
            channels=request.channels, symbols=request.symbols))))

    def close(self) -> None:
        """Leave the relay; the connection itself is closed by its handler."""
        for sub in self.subs.values():
            self.relay.remove(sub)
        self.subs.clear()

    def _check_symbols(self, symbols: list[str]) -> None:
        unknown = sorted(set(symbols) - set(self.symbols))
        if unknown:
            raise protocol.BadRequest(f"unknown symbol(s): {', '.join(unknown)}")

    async def _snapshot(self, sub: Subscription) -> tuple[int, bytes | None]:
        if isinstance(sub, BookSubscription):
            return await self.market_cache.book_snapshot(sub.symbol, sub.depth)
        if isinstance(sub, OrdersSubscription):
            return 0, None  # live only
        if isinstance(sub, CandleSubscription):
            return await self._candles(sub.symbol)
        return await self.market_cache.trades_snapshot(sub.symbol)

    async def _candles(self, symbol: str) -> tuple[int, bytes]:
        """The recent candles; the first snapshot of an instrument seeds its feed."""
        seq, recent = (0, []) if self.candle_source is None else (
            await self.candle_source.recent(symbol))
        feed = self.relay.candles.get(symbol)
        if feed is not None:
            feed.seed(seq, recent)
        return seq, candles.snapshot(symbol, seq, recent)


async def serve(request: web.Request, ws: web.WebSocketResponse, session: Session,
                initial: Subscribe | None) -> None:
    """Run a prepared connection's session and log one line when it ends."""
    started = time.monotonic()
    try:
        await session.run(ws, initial)
    except Exception:
        # Past the upgrade an HTTP error answer would be written into the WebSocket
        # stream: a failure closes the connection with 1011 instead, and is logged.
        log.exception("websocket session failed", path=request.path)
        session.client.close(WSCloseCode.INTERNAL_ERROR, "internal error")
    finally:
        session.close()
        await session.client.stop()
        log.info("websocket closed", path=request.path, query=request.query_string,
                 peer=request.remote, seconds=round(time.monotonic() - started, 3),
                 sent=session.client.sent, close_code=ws.close_code,
                 reason=session.client.close_reason)
