"""One WebSocket client's outgoing side: a bounded queue drained by its own writer task.

The relay only appends to the queue and never awaits a socket, so a client whose socket
is slow holds up nobody but itself. Every message counts against the queue's bound except
book updates, which wait in a conflation `Slot` (the newest replaces the queued one, so
each book costs at most one entry). A client that reaches the bound has fallen behind:
it is closed with 1013 (TRY_AGAIN_LATER) and a reason, and the rest keep their pace.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from svc_stream import metrics

log = structlog.get_logger(__name__)

CLOSE_TIMEOUT = 5.0  # seconds a closing handshake may take before the socket is aborted


class Slot(Protocol):
    """A queued place whose content is read only when the writer reaches it."""

    def take(self) -> bytes | None: ...


class Client:
    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None,
                 limit: int) -> None:
        self.ws, self.transport, self.limit = ws, transport, limit
        self.queue: deque[bytes | Slot] = deque()
        self.sent = 0
        self.close_reason: str | None = None
        self._wakeup = asyncio.Event()
        self._closer: asyncio.Task[None] | None = None
        self._writer = asyncio.get_running_loop().create_task(self._write())

    @property
    def closing(self) -> bool:
        return self._closer is not None

    def send(self, payload: bytes) -> None:
        """Queue one message; a client already `limit` messages behind is dropped."""
        if self._closer is not None:
            return
        if len(self.queue) >= self.limit:
            self.fell_behind(f"too slow: {self.limit} messages were waiting")
            return
        self.queue.append(payload)
        self._wakeup.set()

    def send_slot(self, slot: Slot) -> None:
        """Queue a conflation slot (bounded by its owner: one entry per book at most)."""
        if self._closer is None:
            self.queue.append(slot)
            self._wakeup.set()

    def fell_behind(self, reason: str) -> None:
        if self._closer is None:
            metrics.DROPPED.inc()
            log.warning("dropping slow client", reason=reason)
            self.close(WSCloseCode.TRY_AGAIN_LATER, reason)

    def close(self, code: WSCloseCode, reason: str) -> None:
        """Discard what is queued and start the closing handshake; returns at once."""
        if self._closer is not None:
            return
        self.close_reason = reason
        self.queue.clear()
        self._writer.cancel()
        self._closer = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def stop(self) -> None:
        """Stop writing and wait for a closing handshake begun by `close`, if any."""
        self._writer.cancel()
        await asyncio.wait([self._writer])
        if self._closer is not None:
            await self._closer

    async def _close(self, code: WSCloseCode, reason: str) -> None:
        # ws.close() first flushes what the socket holds; a peer that never reads would
        # keep it forever, so the handshake is bounded and the socket aborted after it.
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.ws.close(code=code, message=reason.encode())
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()

    async def _write(self) -> None:
        try:
            await self._drain()
        except ConnectionResetError:
            pass  # the peer is gone; the connection's reader sees it too and cleans up
        except Exception:
            log.exception("websocket writer failed")
            self.close(WSCloseCode.INTERNAL_ERROR, "internal error")

    async def _drain(self) -> None:
        """Send queued messages in order, as fast as the peer takes them."""
        ws, queue = self.ws, self.queue
        while True:
            if not queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            sent = 0
            try:
                while queue:
                    item = queue.popleft()
                    payload = item if isinstance(item, bytes) else item.take()
                    if payload is not None:
                        await ws.send_frame(payload, WSMsgType.TEXT)
                        sent += 1
            finally:
                self.sent += sent
                metrics.MESSAGES_OUT.inc(sent)
