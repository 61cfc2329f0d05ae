"""The journal: the JetStream stream that holds every command's events, on file storage,
the source of truth that svc_orders recovers from and svc_trades projects.

One definition, used by the writer (`svc_orders.journaling`), the projection (svc_trades)
and tests, so all of them agree on its subjects, storage and de-duplication window.
"""

from __future__ import annotations

import dataclasses

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from common import subjects

DUPLICATE_WINDOW = 120.0  # seconds in which a repeated Nats-Msg-Id is dropped

STREAM_CONFIG = StreamConfig(
    name=subjects.STREAM,
    subjects=[subjects.EVENTS_WILDCARD, subjects.TAKEOVER],
    storage=StorageType.FILE,
    retention=RetentionPolicy.LIMITS,
    discard=DiscardPolicy.OLD,
    duplicate_window=DUPLICATE_WINDOW,
)


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
