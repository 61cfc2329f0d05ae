"""Every live API key, in memory, kept current by watching the keys bucket.

Verifying a request must cost no database or network round trip, and a revocation must
reach every service within a second. So each service loads the bucket at start
and follows its changes (a JetStream ordered consumer that nats-py's `watchall` sets up):
an update lands here milliseconds after `revoke_key` stored it. Secrets are opened once,
when their record arrives, never per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as Nats
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from common import keys, subjects
from common.keys import Identity, SecretBox
from common.tasks import stop_tasks, supervise

log = structlog.get_logger(__name__)

RECHECK_CONNECTION = 0.1  # seconds between looks at the NATS connection while idle
RETRY_WATCH = 0.2  # seconds before watching again after NATS failed us


class LiveKey(msgspec.Struct, frozen=True):
    identity: Identity
    # HMAC-SHA256 keyed with the secret's UTF-8 bytes, nothing hashed yet: a request's
    # check copies it rather than deriving the key's pads again.
    mac: hmac.HMAC

    def __repr__(self) -> str:
        return f"LiveKey({self.identity!r}, secret=***)"


class Keyring:
    """Key id -> live key, for keys neither revoked nor deleted."""

    def __init__(self, box: SecretBox) -> None:
        self._box = box
        self._keys: dict[str, LiveKey] = {}
        self.loaded = asyncio.Event()  # set once the bucket's contents at start are in

    def __repr__(self) -> str:
        return f"Keyring({len(self._keys)} keys)"

    def get(self, key_id: str) -> LiveKey | None:
        return self._keys.get(key_id)

    def apply(self, entry: KeyValue.Entry) -> None:
        """Take one bucket update: a new or changed record, or a deletion."""
        if entry.operation in (KV_DEL, KV_PURGE):
            self._keys.pop(entry.key, None)
            return
        try:
            record = keys.decode_record(entry.value or b"")
            secret = self._box.open(record.sealed_secret)
        except (msgspec.DecodeError, ValueError) as error:
            # A record we cannot read must not keep an older version of it alive.
            self._keys.pop(entry.key, None)
            log.error("unreadable key record skipped", key_id=entry.key,
                      reason=type(error).__name__)
            return
        if record.revoked_at is not None:
            self._keys.pop(entry.key, None)
            return
        self._keys[entry.key] = LiveKey(
            Identity(record.key_id, record.user_id, record.role),
            hmac.new(secret.encode(), digestmod="sha256"))

    async def follow(self, nc: Nats, kv: KeyValue) -> None:
        """Apply every update of the bucket, the current contents first, until cancelled.

        A reconnection to NATS starts the watch again: the server may have lost the
        watch's consumer (an ephemeral one), and nats-py would notice only once its
        heartbeats had been missing for seconds. Starting again is safe: the watch
        delivers each key's latest entry (deletions included), and applying an entry
        twice changes nothing. While NATS is unreachable the keys last seen stay in force.
        """
        while True:
            try:
                await self._watch_until_reconnected(nc, kv)
            except nats.errors.Error as error:  # NATS is down or JetStream not up yet
                log.warning("keys watch interrupted, retrying", error=type(error).__name__)
                await asyncio.sleep(RETRY_WATCH)

    async def _watch_until_reconnected(self, nc: Nats, kv: KeyValue) -> None:
        reconnects = nc.stats["reconnects"]
        # nats-py may signal the end of the contents at start before their last entry
        # has arrived (its marker races the first delivery), so the keys count as loaded
        # only once the bucket's last revision at the start is applied too.
        state = (await nc.jetstream().stream_info(f"KV_{subjects.KEYS_BUCKET}")).state
        target = state.last_seq if state.messages else 0
        applied, marked = 0, False
        watcher = await kv.watchall()
        try:
            while nc.stats["reconnects"] == reconnects:
                try:
                    entry = await watcher.updates(timeout=RECHECK_CONNECTION)  # type: ignore[no-untyped-call]
                except nats.errors.TimeoutError:
                    continue
                if entry is None:  # nats-py: the contents at start are all in
                    marked = True
                else:
                    self.apply(entry)
                    applied = max(applied, entry.revision or 0)
                if marked and applied >= target:
                    self.loaded.set()
        finally:
            with contextlib.suppress(nats.errors.Error):
                await watcher.stop()  # type: ignore[no-untyped-call]

    @asynccontextmanager
    async def watching(self, nc: Nats, replicas: int = 1) -> AsyncIterator[None]:
        """Follow the bucket (made with `replicas` copies if it is not there yet) while
        the block runs; enter it once the keys are loaded."""
        kv = await keys.bucket(nc.jetstream(), replicas)
        task = asyncio.get_running_loop().create_task(
            supervise("keyring", lambda: self.follow(nc, kv)), name="keyring")
        try:
            await self.loaded.wait()
            log.info("keys loaded", keys=len(self._keys))
            yield
        finally:
            await stop_tasks([task])
