"""One WebSocket connection: requests in, its subscriptions' messages out.

All three endpoints are sessions; `/ws/trades/` and `/ws/orderbook/` start subscribed to
the feed named by their query (and send no acknowledgement, so the original system's
clients see only market data), while `/ws/` starts with none and acknowledges each
`subscribe`/`unsubscribe`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Collection

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from svc_stream import protocol
from svc_stream.client import Client, text_frame
from svc_stream.feeds import BookSubscription, Subscription, TradeSubscription
from svc_stream.market_cache import MarketCache
from svc_stream.protocol import Channel, Ping, Subscribe, Unsubscribe
from svc_stream.relay import Relay

log = structlog.get_logger(__name__)

PONG = text_frame(protocol.PONG)


class Session:
    def __init__(self, client: Client, relay: Relay, market_cache: MarketCache,
                 symbols: Collection[str]) -> None:
        self.client, self.relay, self.market_cache = client, relay, market_cache
        self.symbols = symbols  # the instruments one may subscribe to
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
        except protocol.BadRequest as error:
            self.client.send(text_frame(protocol.error(str(error))))

    async def subscribe(self, request: Subscribe, acknowledge: bool = True) -> None:
        """Register the new feeds (buffering), read their snapshots, then go live."""
        self._check_symbols(request.symbols)
        new: list[Subscription] = []
        for channel, symbol in itertools.product(request.channels, request.symbols):
            if (channel, symbol) in self.subs:
                continue
            sub: Subscription = (TradeSubscription(self.client, symbol) if channel == "trades"
                                 else BookSubscription(self.client, symbol, request.depth))
            self.subs[channel, symbol] = sub
            self.relay.add(sub)
            new.append(sub)
        if acknowledge:
            self.client.send(text_frame(protocol.encode(protocol.Subscribed(
                channels=request.channels, symbols=request.symbols))))
        snapshots = await asyncio.gather(*(self._snapshot(sub) for sub in new))
        for sub, (seq, snapshot) in zip(new, snapshots, strict=True):
            sub.start(seq, text_frame(snapshot))

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

    async def _snapshot(self, sub: Subscription) -> tuple[int, bytes]:
        if isinstance(sub, BookSubscription):
            return await self.market_cache.book_snapshot(sub.symbol, sub.depth)
        return await self.market_cache.trades_snapshot(sub.symbol)


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
