"""A client's subscription to one feed: buffered until its snapshot is out, then live.

The hand-off from snapshot to live updates loses and repeats nothing:

1. the subscription is registered with the relay first, buffering what arrives;
2. then the snapshot is read from Redis, which svc_orders (by contract) writes *before*
   it publishes the same change on NATS, so every update is in the snapshot, in the
   buffer, or both;
3. the snapshot is sent, then the buffer, then live updates; "both" is settled by the
   sequence number: a trades update goes out only if its seq is past the last one the
   client has (the snapshot's seq is that of its newest trade), a book only if its seq
   is not behind (heartbeats repeat the seq of an unchanged book).

The seq check stays on for the life of the subscription, so an update that NATS delivers
late cannot take a client backwards either.

After a NATS reconnect the same steps catch a live trade subscription up: it buffers
again, the trades it missed come from Redis as one update, then the buffer (see
`Relay.catch_up`). Books need no catch-up: the next one (within a second) is complete.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from common import subjects
from common.views import BookMessage
from svc_stream import metrics
from svc_stream.client import Client
from svc_stream.protocol import Channel


class Subscription(ABC):
    channel: ClassVar[Channel]
    __slots__ = ("backlog", "client", "seq", "symbol")

    def __init__(self, client: Client, symbol: str) -> None:
        self.client, self.symbol = client, symbol
        self.seq = -1  # the seq of the newest message the client has been given
        self.backlog: list[tuple[int, bytes]] | None = []  # None once live

    def deliver(self, seq: int, frame: bytes) -> None:
        """One message from the relay: buffered until `start`, forwarded after it."""
        if self.backlog is None:
            self.forward(seq, frame)
        else:
            self.buffer(self.backlog, seq, frame)

    def start(self, seq: int, snapshot: bytes | None) -> None:
        """Send the snapshot (if any), then what arrived while it was read; live from now
        on, past `seq`."""
        if self.backlog is None:
            return
        if snapshot is not None:
            self.client.send(snapshot)
        self.seq = max(self.seq, seq)
        backlog, self.backlog = self.backlog, None
        for message_seq, frame in backlog:
            self.forward(message_seq, frame)

    def pause(self) -> bool:
        """Buffer again until the next `start` (a catch-up); False if not live yet."""
        if self.backlog is not None:
            return False
        self.backlog = []
        return True

    def cancel(self) -> None:
        """Forget anything not yet sent: the subscription has left the relay, and a
        snapshot that was still being read when it did is not sent (see `start`)."""
        self.backlog = None

    @abstractmethod
    def buffer(self, backlog: list[tuple[int, bytes]], seq: int, frame: bytes) -> None:
        """Keep a message that arrived before the snapshot went out."""

    @abstractmethod
    def forward(self, seq: int, frame: bytes) -> None:
        """Queue a live message for the client unless it has it already."""


class Sequential(Subscription):
    """Every update, in order: nothing may be conflated, so the client's bound applies."""

    __slots__ = ()

    def buffer(self, backlog: list[tuple[int, bytes]], seq: int, frame: bytes) -> None:
        if len(backlog) >= self.client.limit:
            self.client.fell_behind(f"too slow: {self.client.limit} {self.channel} updates "
                                    "arrived before the snapshot could be read")
            return
        backlog.append((seq, frame))

    def forward(self, seq: int, frame: bytes) -> None:
        if seq > self.seq:
            self.seq = seq
            self.client.send(frame)


class TradeSubscription(Sequential):
    channel = "trades"
    __slots__ = ()


class CandleSubscription(Sequential):
    """The current one-minute candle after every trade (see `candles`)."""

    channel = "candles"
    __slots__ = ()


class OrdersSubscription(Sequential):
    """One user's order updates and fills of one instrument, from that user's subject.
    No snapshot: live from the `subscribed` answer on (open orders are on GET /orders/)."""

    channel = "orders"
    __slots__ = ("subject", "user_id")

    def __init__(self, client: Client, symbol: str, user_id: str) -> None:
        super().__init__(client, symbol)
        self.user_id = user_id
        self.subject = subjects.user_orders(user_id)


class BookSubscription(Subscription):
    """The newest book only: an update not yet sent is replaced by the next one."""

    channel = "orderbook"
    __slots__ = ("depth", "pending")

    def __init__(self, client: Client, symbol: str, depth: int) -> None:
        super().__init__(client, symbol)
        self.depth = depth
        self.pending: bytes | None = None

    def buffer(self, backlog: list[tuple[int, bytes]], seq: int, frame: bytes) -> None:
        backlog[:] = [(seq, frame)]

    def forward(self, seq: int, frame: bytes) -> None:
        if seq < self.seq:
            return
        self.seq = seq
        if self.pending is None:
            self.pending = frame
            self.client.send_slot(self)  # read when the client's queue is written
        else:
            self.pending = frame
            metrics.CONFLATED.inc()

    def take(self) -> bytes | None:
        """The client's writer reached this book's place in the queue: the newest book."""
        frame, self.pending = self.pending, None
        return frame

    def cancel(self) -> None:
        super().cancel()
        self.pending = None


def cut(book: BookMessage, depth: int) -> BookMessage:
    """The book with at most `depth` levels per side."""
    return BookMessage(type=book.type, channel=book.channel, symbol=book.symbol, seq=book.seq,
                       timestamp=book.timestamp, bids=book.bids[:depth], asks=book.asks[:depth])
