"""Service snapshots in a JetStream object store, so recovery replays only the tail.

A service snapshot is the engine's snapshot plus the order store's state. It is written
only once every batch it contains is acknowledged by the journal; it records the stream
sequence of the last of them, and recovery replays from the next one.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib

import msgspec
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
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
CHUNKS_AHEAD = 64  # chunks (128 KiB each) read ahead of the one being kept


class ServiceSnapshot(msgspec.Struct, frozen=True):
    stream_seq: int  # the last journaled batch the state includes
    engine: bytes  # `Exchange.capture()`
    store: StoreState


_decoder = msgspec.msgpack.Decoder(ServiceSnapshot)


async def bucket(js: JetStreamContext) -> ObjectStore:
    try:
        return await js.object_store(subjects.SNAPSHOT_BUCKET)
    except BucketNotFoundError:
        return await js.create_object_store(subjects.SNAPSHOT_BUCKET)


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


async def save(objects: ObjectStore, snapshot: ServiceSnapshot) -> None:
    await objects.put(OBJECT_NAME, msgspec.msgpack.encode(snapshot))
