"""The journal: the JetStream stream that holds every command's events, on file storage,
the source of truth that svc_orders recovers from and svc_trades projects.

One definition, used by the writer (`svc_orders.journaling`), the projection (svc_trades)
and tests, so all of them agree on its subjects, storage, de-duplication window and the
shape of its messages: each holds the batches of consecutive commands of one instrument
(group commit), named by the first and last of them.
"""

from __future__ import annotations

import dataclasses

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from common import subjects
from common.messages import EventBatch, journal_decoder

DUPLICATE_WINDOW = 120.0  # seconds in which a repeated Nats-Msg-Id is dropped

STREAM_CONFIG = StreamConfig(
    name=subjects.STREAM,
    subjects=[subjects.EVENTS_WILDCARD, subjects.TAKEOVER],
    storage=StorageType.FILE,
    retention=RetentionPolicy.LIMITS,
    discard=DiscardPolicy.OLD,
    duplicate_window=DUPLICATE_WINDOW,
)


def batches_of(data: bytes) -> list[EventBatch]:
    """The batches one journal message holds, in order, whichever shape it has (a group,
    or a single batch written before group commit); `msgspec.DecodeError` otherwise."""
    decoded = journal_decoder.decode(data)
    return decoded if type(decoded) is list else [decoded]  # type: ignore[list-item]


def group_id(batches: list[EventBatch]) -> str:
    """`Nats-Msg-Id` of a group of one instrument's consecutive batches: `SYMBOL:seq` for
    one (as every batch was named before group commit), `SYMBOL:first-last` for more."""
    first, last = batches[0], batches[-1]
    name = subjects.batch_id(first.symbol, first.seq)
    return name if last is first else f"{name}-{last.seq}"


async def ensure_stream(js: JetStreamContext, replicas: int = 1) -> None:
    """Create the stream with `replicas` copies, or check that the existing one journals
    the right subjects; one made before takeovers existed, or with fewer copies than
    asked, is updated (neither change touches a message)."""
    try:
        info = await js.stream_info(subjects.STREAM)
    except NotFoundError:
        await js.add_stream(dataclasses.replace(STREAM_CONFIG, num_replicas=replicas))
        return
    if info.config.subjects == [subjects.EVENTS_WILDCARD] or (
            (info.config.num_replicas or 1) < replicas):
        info.config.subjects = STREAM_CONFIG.subjects
        info.config.num_replicas = max(replicas, info.config.num_replicas or 1)
        info = await js.update_stream(info.config)
    if info.config.subjects != STREAM_CONFIG.subjects:
        raise RuntimeError(f"stream {subjects.STREAM} has subjects {info.config.subjects}, "
                           f"expected {STREAM_CONFIG.subjects}")
    if info.config.storage != StorageType.FILE:
        raise RuntimeError(f"stream {subjects.STREAM} must use file storage")
