"""The journal: the JetStream stream that holds every command's events, on file storage,
the source of truth that svc_orders recovers from and svc_trades projects.

One definition, used by the writer (`svc_orders.journaling`), the projection (svc_trades)
and tests, so all of them agree on its subjects, storage and de-duplication window.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from common import subjects

DUPLICATE_WINDOW = 120.0  # seconds in which a repeated Nats-Msg-Id is dropped

STREAM_CONFIG = StreamConfig(
    name=subjects.STREAM,
    subjects=[subjects.EVENTS_WILDCARD],
    storage=StorageType.FILE,
    retention=RetentionPolicy.LIMITS,
    discard=DiscardPolicy.OLD,
    duplicate_window=DUPLICATE_WINDOW,
)


async def ensure_stream(js: JetStreamContext) -> None:
    """Create the stream, or check that the existing one journals the right subjects."""
    try:
        info = await js.stream_info(subjects.STREAM)
    except NotFoundError:
        await js.add_stream(STREAM_CONFIG)
        return
    if info.config.subjects != STREAM_CONFIG.subjects:
        raise RuntimeError(f"stream {subjects.STREAM} has subjects {info.config.subjects}, "
                           f"expected {STREAM_CONFIG.subjects}")
    if info.config.storage != StorageType.FILE:
        raise RuntimeError(f"stream {subjects.STREAM} must use file storage")
