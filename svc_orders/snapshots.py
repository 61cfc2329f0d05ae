"""Service snapshots in a JetStream object store, so recovery replays only the tail.

A service snapshot is the engine's snapshot plus the order store's state. It is written
only once every batch it contains is acknowledged by the journal; it records the stream
sequence of the last of them, and recovery replays from the next one.
"""

from __future__ import annotations

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from common import subjects
from svc_orders.store import StoreState

OBJECT_NAME = "engine"


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


async def load(objects: ObjectStore) -> ServiceSnapshot | None:
    try:
        result = await objects.get(OBJECT_NAME)
    except ObjectNotFoundError:
        return None
    return _decoder.decode(result.data or b"")


async def save(objects: ObjectStore, snapshot: ServiceSnapshot) -> None:
    await objects.put(OBJECT_NAME, msgspec.msgpack.encode(snapshot))
