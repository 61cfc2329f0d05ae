"""One WebSocket client's outgoing side: a bounded queue, written once per loop iteration.

The relay only appends to queues and never awaits a socket, so a client whose socket is
slow holds up nobody but itself. Every message counts against the queue's bound except
book updates, which wait in a conflation `Slot` (the newest replaces the queued one, so
each book costs at most one entry). A client that reaches the bound has fallen behind:
it is closed with 1013 (TRY_AGAIN_LATER) and a reason, and the rest keep their pace.

Frames are built once per message for all clients (see `text_frame`) and queued by
reference. The `Flusher` writes each client's queue at the end of the loop iteration,
in one non-blocking call: however many messages arrived in the iteration, a client costs
one system call, so a loop that falls behind catches up instead of falling further.

Only a socket that has taken everything it was given is written to; otherwise the queue
waits for the client's writer task, woken when the socket is empty again. Together with
a small kernel send buffer (`SEND_BUFFER`), a client that stops reading holds a few
hundred kilobytes at most, is cheap to serve (a queue append per message) and reaches
its bound soon, however many such clients there are.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import deque
from typing import Protocol

import structlog
from aiohttp import WSCloseCode, web
from aiohttp.abc import AbstractStreamWriter

from svc_stream import metrics

log = structlog.get_logger(__name__)

CLOSE_TIMEOUT = 5.0  # seconds a closing handshake may take before the socket is aborted
# Bytes the kernel may hold unsent per client (it books about twice this). Linux would
# grow it to 4 MB for a peer that does not read, and 2,000 of those press on every other
# socket of the machine; 64 KiB still carries 600 KB/s at 100 ms round trip.
SEND_BUFFER = 64 * 1024
FLUSH_SLICE = 200  # clients written per event-loop callback (see `Flusher`)


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


class Flusher:
    """Writes the queues of the clients that got frames, once per event-loop iteration.

    At most `FLUSH_SLICE` clients per callback: with thousands of clients a pass takes
    tens of milliseconds, and a connecting client's steps run between the slices rather
    than after the whole pass.
    """

    def __init__(self) -> None:
        self._due: list[Client] = []  # a flush is scheduled while this is not empty

    def add(self, client: Client) -> None:
        if not self._due:
            asyncio.get_running_loop().call_soon(self._flush)
        self._due.append(client)

    def _flush(self) -> None:
        due, self._due = self._due[:FLUSH_SLICE], self._due[FLUSH_SLICE:]
        if self._due:
            asyncio.get_running_loop().call_soon(self._flush)
        metrics.MESSAGES_OUT.inc(sum(client.flush() for client in due))


class Client:
    def __init__(self, ws: web.WebSocketResponse, stream: AbstractStreamWriter,
                 transport: asyncio.Transport, limit: int, flusher: Flusher) -> None:
        self.ws, self.stream, self.transport, self.limit = ws, stream, transport, limit
        self.flusher = flusher
        self.queue: deque[bytes | Slot] = deque()
        self.sent = 0
        self.close_reason: str | None = None
        self._due = False  # in the flusher's list
        self._wakeup = asyncio.Event()
        self._closer: asyncio.Task[None] | None = None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        # Paused as soon as the kernel leaves anything unsent, resumed once it took all:
        # frames then wait in `queue` (shared, conflated) rather than copied in `transport`.
        transport.set_write_buffer_limits(high=0)
        self._writer = asyncio.get_running_loop().create_task(self._write())

    @property
    def writing(self) -> bool:
        """False once the connection is closing, by us or otherwise: sends are ignored."""
        return self._closer is None and not self._writer.done()

    def send(self, frame: bytes) -> None:
        """Queue one frame; a client already `limit` messages behind is dropped."""
        if not self.writing:
            return
        if len(self.queue) >= self.limit:
            self.fell_behind(f"too slow: {self.limit} messages were waiting")
            return
        self.queue.append(frame)
        self._flush_soon()

    def send_slot(self, slot: Slot) -> None:
        """Queue a conflation slot (bounded by its owner: one entry per book at most)."""
        if not self.writing:
            return
        self.queue.append(slot)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if not self._due:
            self._due = True
            self.flusher.add(self)

    def flush(self) -> int:
        """Write the queue now if the socket has taken everything so far, else leave it
        to the writer; the number of frames written."""
        self._due = False
        if self.transport.get_write_buffer_size():
            self._wakeup.set()
            return 0
        return self._write_queued()

    def _write_queued(self) -> int:
        frames = []
        queue = self.queue
        while queue:
            item = queue.popleft()
            frame = item if isinstance(item, bytes) else item.take()
            if frame is not None:
                frames.append(frame)
        if not frames or self.ws.closed or self.transport.is_closing():
            return 0  # closing (by the peer, a failed heartbeat or us): no data after it
        # Whole frames only, written synchronously: they cannot interleave with the
        # control frames that aiohttp writes itself.
        self.transport.writelines(frames)
        self.sent += len(frames)
        return len(frames)

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
        """Stop writing and wait for a closing handshake begun by `close`, if any.

        A connection that ends with bytes its peer has not taken (a failed heartbeat
        closes the socket, which waits for them) is aborted after CLOSE_TIMEOUT: a peer
        that never reads would otherwise hold the socket and its buffers forever.
        """
        self._writer.cancel()
        await asyncio.wait([self._writer])
        if self._closer is None and not self.ws.closed:
            # The peer left without a closing handshake (a reset, say). Closing our side
            # too stops aiohttp's heartbeat timer, which would otherwise keep the whole
            # connection in memory for up to one more heartbeat period.
            self.close(WSCloseCode.GOING_AWAY, "connection lost")
        if self._closer is not None:
            await self._closer
        if self.transport.get_write_buffer_size():
            asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.transport.abort)

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
        """The slow path: wait until the socket has taken everything, then write the queue."""
        while True:
            self._wakeup.clear()
            await self._wakeup.wait()
            await self.stream.drain()  # waits only while the peer is not reading
            metrics.MESSAGES_OUT.inc(self._write_queued())
