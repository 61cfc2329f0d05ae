"""Service snapshots in a JetStream object store, so recovery replays only the tail.

A service snapshot is the engine's snapshot plus the order store's state. It is written
only once every batch it contains is acknowledged by the journal; it records the stream
sequence of the last of them, and recovery replays from the next one. The object's
`STREAM_SEQ` header holds that sequence too, so that an instance can tell how recent the
stored snapshot is without downloading it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import hashlib
import os
import tempfile
import traceback
from collections.abc import Awaitable, Callable
from typing import NoReturn

import msgspec
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from nats.js.api import ObjectMeta, ObjectStoreConfig
from nats.js.errors import BucketNotFoundError, ObjectNotFoundError
from nats.js.object_store import (
    OBJ_CHUNKS_PRE_TEMPLATE,
    OBJ_DIGEST_TEMPLATE,
    OBJ_STREAM_TEMPLATE,
    ObjectStore,
)

from common import subjects
from svc_orders import streamrange
from svc_orders.store import StoreState

OBJECT_NAME = "engine"
STREAM_SEQ = "Ex-Stream-Seq"  # the object's header: the journal position it holds
CHUNKS_AHEAD = 64  # chunks (128 KiB each) read ahead of the one being kept


class ServiceSnapshot(msgspec.Struct, frozen=True):
    stream_seq: int  # the last journaled batch the state includes
    engine: bytes  # `Exchange.capture()`
    store: StoreState


_decoder = msgspec.msgpack.Decoder(ServiceSnapshot)


async def bucket(js: JetStreamContext, replicas: int = 1) -> ObjectStore:
    try:
        return await js.object_store(subjects.SNAPSHOT_BUCKET)
    except BucketNotFoundError:
        return await js.create_object_store(subjects.SNAPSHOT_BUCKET, config=ObjectStoreConfig(
            bucket=subjects.SNAPSHOT_BUCKET, replicas=replicas))


async def load(nats: Nats, objects: ObjectStore) -> ServiceSnapshot | None:
    """The newest snapshot (None if none was written), its chunks read by `streamrange`
    and checked against the object's size and digest as nats-py's own `get` does."""
    try:
        info = await objects.get_info(OBJECT_NAME)
    except ObjectNotFoundError:
        return None
    bucket = subjects.SNAPSHOT_BUCKET
    chunks: list[bytes] = []
    async with contextlib.aclosing(streamrange.messages(
            nats, OBJ_STREAM_TEMPLATE.format(bucket=bucket),
            OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=info.nuid), 1,
            CHUNKS_AHEAD)) as messages:
        async for delivered, chunk in messages:
            chunks.append(chunk)
            if not delivered.pending:
                break
    data = b"".join(chunks)
    digest = OBJ_DIGEST_TEMPLATE.format(
        digest=base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode())
    if len(data) != info.size or digest != info.digest:
        raise ValueError(f"snapshot {info.nuid}: {len(data)} bytes, digest {digest}; "
                         f"the object store lists {info.size} bytes, {info.digest}")
    return _decoder.decode(data)


Capture = Callable[[], tuple[bytes, StoreState]]


async def save(objects: ObjectStore, capture: Capture, stream_seq: Awaitable[int]) -> int:
    """Write the state `capture()` sees now, as of the journal's `stream_seq`, and return
    that sequence once the snapshot is stored.

    Like Redis, the capture runs in a forked child: it sees the memory as it was at the
    fork, however far matching goes on meanwhile, so the event loop pauses only for the
    fork. The child captures, waits for `stream_seq` (sent once the journal has
    acknowledged everything captured), and writes the snapshot to a temporary file that
    this process then uploads. If `stream_seq` fails the child writes nothing.
    """
    with tempfile.TemporaryFile(prefix="exchange-snapshot-") as file:
        seq_read, seq_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            _write_in_child(capture, seq_read, seq_write, file.fileno())
        os.close(seq_read)
        try:
            seq = await stream_seq
            os.write(seq_write, str(seq).encode())  # a few bytes: never blocks
        finally:
            os.close(seq_write)
            status = await _exit_status(pid)
        if os.waitstatus_to_exitcode(status):
            raise RuntimeError(f"the snapshot child exited with status {status}")
        file.seek(0)  # the child wrote through the same open file
        # A header's values are a list, as in NATS' own object meta (Go's nats.Header).
        await objects.put(OBJECT_NAME, file, ObjectMeta(headers={STREAM_SEQ: [str(seq)]}))
    return seq


async def stored_seq(objects: ObjectStore) -> int:
    """The journal position of the stored snapshot, from its object's header; 0 if none
    is stored (or it was written before the header existed)."""
    try:
        info = await objects.get_info(OBJECT_NAME)
    except ObjectNotFoundError:
        return 0
    values = (info.headers or {}).get(STREAM_SEQ) or ["0"]
    return int(values[0])


async def _exit_status(pid: int) -> int:
    """The wait status of the child `pid` once it has ended, waited for on the event loop
    (its pidfd becomes readable) rather than by a thread: starting the executor's
    thread took 2 ms of the step right after the fork, as long as the fork itself."""
    loop = asyncio.get_running_loop()
    pidfd = os.pidfd_open(pid)
    try:
        ended: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not ended.done():
                ended.set_result(None)

        loop.add_reader(pidfd, readable)
        try:
            await ended
        finally:
            loop.remove_reader(pidfd)
    finally:
        os.close(pidfd)
    # It has ended: this reaps it and never waits.
    return os.waitpid(pid, os.WNOHANG)[1]  # noqa: ASYNC222


def _write_in_child(capture: Capture, seq_read: int, seq_write: int, fd: int) -> NoReturn:
    """The forked child: never returns into the service's code."""
    code = 1
    try:
        gc.disable()  # a collection would touch (and so copy) every page
        os.close(seq_write)
        engine, store = capture()
        with open(seq_read, "rb") as pipe:
            seq = pipe.read()
        if seq:
            with open(fd, "wb", closefd=False) as out:
                out.write(msgspec.msgpack.encode(ServiceSnapshot(int(seq), engine, store)))
            code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)
