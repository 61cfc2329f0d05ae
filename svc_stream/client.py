"""One WebSocket client's outgoing side: a bounded queue drained by its own writer task.

The relay only appends to the queue and never awaits a socket, so a client whose socket
is slow holds up nobody but itself. Every message counts against the queue's bound except
book updates, which wait in a conflation `Slot` (the newest replaces the queued one, so
each book costs at most one entry). A client that reaches the bound has fallen behind:
it is closed with 1013 (TRY_AGAIN_LATER) and a reason, and the rest keep their pace.

Frames are built once per message for all clients (see `text_frame`). A client that is
keeping up (nothing queued, nothing unsent in its socket buffer) gets a frame written at
once, a non-blocking write that costs no task switch; otherwise the frame is queued and
the writer hands everything queued to the socket in one call, so a client that is
momentarily behind catches up with one system call rather than one per message.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import Protocol

import structlog
from aiohttp import WSCloseCode, web
from aiohttp.abc import AbstractStreamWriter

from svc_stream import metrics

log = structlog.get_logger(__name__)

CLOSE_TIMEOUT = 5.0  # seconds a closing handshake may take before the socket is aborted


def text_frame(payload: bytes) -> bytes:
    """`payload` as one final, unmasked text frame (RFC 6455 5.2), as a server sends it.

    Built once per message and shared by every client: the payload bytes inside are the
    ones NATS delivered. Valid because the service never negotiates compression.
    """
    size = len(payload)
    if size < 126:
        return struct.pack("!BB", 0x81, size) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


class Slot(Protocol):
    """A queued place whose content is read only when the writer reaches it."""

    def take(self) -> bytes | None: ...


class Client:
    def __init__(self, ws: web.WebSocketResponse, stream: AbstractStreamWriter,
                 transport: asyncio.Transport, limit: int) -> None:
        self.ws, self.stream, self.transport, self.limit = ws, stream, transport, limit
        self.queue: deque[bytes | Slot] = deque()
        self.sent = 0
        self.close_reason: str | None = None
        self._wakeup = asyncio.Event()
        self._closer: asyncio.Task[None] | None = None
        self._writer = asyncio.get_running_loop().create_task(self._write())

    @property
    def writing(self) -> bool:
        """False once the connection is closing, by us or otherwise: sends are ignored."""
        return self._closer is None and not self._writer.done()

    def send(self, frame: bytes) -> None:
        """Queue one frame; a client already `limit` messages behind is dropped."""
        if not self.writing:
            return
        if not self.queue and not self.transport.get_write_buffer_size():
            self._write_now(frame)
            return
        if len(self.queue) >= self.limit:
            self.fell_behind(f"too slow: {self.limit} messages were waiting")
            return
        self.queue.append(frame)
        self._wakeup.set()

    def send_slot(self, slot: Slot) -> None:
        """Queue a conflation slot (bounded by its owner: one entry per book at most)."""
        if not self.writing:
            return
        if not self.queue and not self.transport.get_write_buffer_size():
            frame = slot.take()
            if frame is not None:
                self._write_now(frame)
            return
        self.queue.append(slot)
        self._wakeup.set()

    def _write_now(self, frame: bytes) -> None:
        """The fast path: in order, since nothing is queued or unsent ahead of `frame`."""
        if not self.ws.closed and not self.transport.is_closing():
            self.transport.write(frame)
            self.sent += 1
            metrics.MESSAGES_OUT.inc()

    def fell_behind(self, reason: str) -> None:
        if self.writing:
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
        """Write queued frames in order, as fast as the peer takes them."""
        queue, transport = self.queue, self.transport
        while True:
            if not queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            frames = []
            while queue:
                item = queue.popleft()
                frame = item if isinstance(item, bytes) else item.take()
                if frame is not None:
                    frames.append(frame)
            if self.ws.closed or transport.is_closing():
                return  # closing (by the peer, a failed heartbeat or us): no data after it
            # Whole frames only, written synchronously (here and in `_write_now`): they
            # cannot interleave with the control frames that aiohttp writes itself.
            transport.writelines(frames)
            self.sent += len(frames)
            metrics.MESSAGES_OUT.inc(len(frames))
            await self.stream.drain()  # waits only while the peer is not reading
