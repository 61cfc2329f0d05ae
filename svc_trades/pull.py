"""A JetStream pull consumer that fetches ahead, for the projection.

nats-py's `fetch` waits for every message in a task of its own (tens of microseconds
each). Here messages land in a buffer from a plain subscription callback, and a new pull
request goes out whenever less than two batches are buffered or on their way, so the
next batch arrives while the current one is being written to PostgreSQL.

Bookkeeping of what is on its way: each request asks for `batch` messages, at most
`REQUEST_BYTES` of them (journal messages hold groups of commands, so their size varies
widely), and expires after `REQUEST_EXPIRES`; a request that ends short says so with a
status message (408 expired, 409 "Message Size Exceeds MaxBytes"; 409 "Batch Completed"
when it delivered all it asked for), with the count it will never deliver. Those
requests bound what is buffered, so the subscription itself has no limit: nats-py would
otherwise drop messages beyond its own (a slow consumer), and the projection would
acknowledge past them. A reconnect loses every request with the old connection, end and
all, so the count starts over then; were an end lost otherwise, the count is reset once
every request must have expired. Any other 409 (consumer deleted, leadership change, too
many requests) ends the session, which realigns the consumer and starts over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque

from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

REQUEST_EXPIRES = 5.0  # seconds a pull request stays open on the server
REQUEST_BYTES = 4 * 1024 * 1024  # most bytes of messages one pull request delivers
# 409s that end a request bounded in bytes normally: it took its bytes, or its count
_REQUEST_DONE = frozenset(("Message Size Exceeds MaxBytes", "Batch Completed"))


class PullError(Exception):
    """JetStream ended a pull request for a reason other than its expiry."""


class Puller:
    def __init__(self, nc: Nats, stream: str, durable: str, batch: int) -> None:
        self.nc, self.batch = nc, batch
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.request = json.dumps({"batch": batch, "max_bytes": REQUEST_BYTES,
                                   "expires": int(REQUEST_EXPIRES * 1e9)}).encode()
        self.inbox = nc.new_inbox()
        self.buffer: deque[Msg] = deque()
        self.arrived = asyncio.Event()
        self.outstanding = 0  # messages requested, neither delivered nor given up
        self.last_request = 0.0
        self.reconnects = nc.stats["reconnects"]  # as of the requests outstanding
        self.failure: str | None = None
        self.subscription: Subscription | None = None

    async def start(self) -> None:
        self.subscription = await self.nc.subscribe(self.inbox, cb=self._receive,
                                                    pending_msgs_limit=0,
                                                    pending_bytes_limit=0)

    async def close(self) -> None:
        if self.subscription is not None:
            with contextlib.suppress(Exception):
                await self.subscription.unsubscribe()

    async def _receive(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            self.buffer.append(msg)
            self.outstanding -= 1
        elif status in ("404", "408") or (  # a request ended: these will not come
                status == "409" and msg.headers is not None
                and msg.headers.get("Description") in _REQUEST_DONE):
            assert msg.headers is not None
            self.outstanding -= int(msg.headers.get("Nats-Pending-Messages") or 0)
        elif status != "100":  # 100 is an idle heartbeat
            assert msg.headers is not None
            self.failure = f"{status} {msg.headers.get('Description', '')}".strip()
        self.arrived.set()

    async def next(self, wait: float) -> list[Msg]:
        """Up to `batch` messages in stream order; [] if none came within `wait` seconds."""
        deadline = time.monotonic() + wait
        while not self.buffer:
            await self._top_up()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self.arrived.wait()
        taken = [self.buffer.popleft() for _ in range(min(self.batch, len(self.buffer)))]
        await self._top_up()
        return taken

    async def _top_up(self) -> None:
        if self.failure is not None:
            raise PullError(self.failure)
        now = time.monotonic()
        if self.nc.stats["reconnects"] != self.reconnects:  # the server knows none of them
            self.reconnects, self.outstanding = self.nc.stats["reconnects"], 0
        if self.outstanding > 0 and now - self.last_request > REQUEST_EXPIRES + 1.0:
            self.outstanding = 0  # every request has expired: their end was lost
        if len(self.buffer) + self.outstanding <= self.batch:
            await self.nc.publish(self.subject, self.request, reply=self.inbox)
            self.outstanding += self.batch
            self.last_request = now
