"""Who leads: one svc_orders instance holds the lease and takes commands, the others
follow the journal as hot standbys and take over when the lease is free.

The lease is one key in a JetStream key-value bucket whose entries expire `ttl` seconds
after their last write: taken with `create` (only if no one holds it) and renewed with
a compare-and-set `update` naming the revision this instance wrote last, so a renewal
after someone else took the key fails. The lease only decides who *should* write;
correctness never rests on its timing. A new leader first appends a takeover message to
the journal's stream, which breaks the chain of predecessors the old leader appends
with: whatever the old leader sends afterwards, however late it wakes up, JetStream
refuses (`Leadership._take_over`); the old leader, fenced and rebuilt, finds that
takeover in the journal and steps down (`Leadership.confirm`).

`held()` is this instance's own view: the lease was renewed less than `ttl` ago,
measured from before the renewal was sent (the server's expiry can only be later). An
instance that cannot renew stops taking commands at once; it steps down (rebuilds its
state from the journal and follows) once a renewal is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
import structlog
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoStreamResponseError,
    NotFoundError,
)
from nats.js.kv import KeyValue
from redis.asyncio import Redis

from common import subjects
from common.tasks import stop_tasks, supervise
from svc_orders import metrics
from svc_orders.follower import Follower
from svc_orders.sequencer import Sequencer

log = structlog.get_logger(__name__)

POLL = 0.1  # seconds between a standby's attempts at the lease (and journal reads)
NEWCOMER = 1.0  # seconds after its start before a standby tries for the lease


class Holder(msgspec.Struct, frozen=True):
    """The lease's value: which instance holds it and where clients reach it."""

    instance: str
    url: str


_holder_decoder = msgspec.json.Decoder(Holder)


class Lease:
    def __init__(self, js: JetStreamContext, url: str, ttl: float, replicas: int) -> None:
        self.js, self.ttl, self.replicas = js, ttl, replicas
        self.me = Holder(instance=uuid.uuid4().hex, url=url)
        self.revision: int | None = None  # of our last write, while we hold the lease
        self.valid_until = 0.0  # monotonic
        self._kv: KeyValue | None = None

    async def bucket(self) -> KeyValue:
        """The lease bucket, made if missing: one entry per key, each gone `ttl` seconds
        after its last write."""
        if self._kv is None:
            try:
                self._kv = await self.js.key_value(subjects.LEADER_BUCKET)
            except BucketNotFoundError:
                self._kv = await self.js.create_key_value(KeyValueConfig(
                    bucket=subjects.LEADER_BUCKET, history=1, ttl=self.ttl,
                    replicas=self.replicas, storage=StorageType.FILE))
        return self._kv

    def held(self) -> bool:
        return self.revision is not None and time.monotonic() < self.valid_until

    async def acquire(self) -> bool:
        """Take the lease if no one holds it."""
        sent = time.monotonic()
        try:
            async with asyncio.timeout(self.ttl):
                kv = await self.bucket()
                self.revision = await kv.create(subjects.LEADER_KEY,
                                                msgspec.json.encode(self.me))
        except KeyWrongLastSequenceError:
            return False
        except NoStreamResponseError:  # the bucket is gone (a server lost it): remake it
            self._kv = None
            raise
        self.valid_until = sent + self.ttl
        return True

    async def renew(self) -> bool:
        """Extend the lease; False once someone else took it or it expired. Any other
        failure (NATS unreachable, no answer) raises: it proves neither."""
        assert self.revision is not None, "renew only a lease held"
        sent = time.monotonic()
        try:
            async with asyncio.timeout(self.ttl):
                kv = await self.bucket()
                self.revision = await kv.update(subjects.LEADER_KEY,
                                                msgspec.json.encode(self.me),
                                                last=self.revision)
        except KeyWrongLastSequenceError:
            self.revision = None
            return False
        except NoStreamResponseError:  # the bucket is gone: made again, it refuses us
            self._kv = None
            raise
        self.valid_until = sent + self.ttl
        metrics.LEASE_RENEWALS.inc()
        return True

    async def release(self) -> None:
        """Give the lease up at shutdown, so that a standby takes over at once."""
        revision, self.revision = self.revision, None
        if revision is not None:
            with contextlib.suppress(Exception):
                await (await self.bucket()).delete(subjects.LEADER_KEY, last=revision)

    async def leader(self) -> Holder | None:
        """Who holds the lease now, if anyone."""
        try:
            entry = await (await self.bucket()).get(subjects.LEADER_KEY)
        except KeyNotFoundError:  # also a deleted key
            return None
        return None if not entry.value else _holder_decoder.decode(entry.value)


async def append_takeover(js: JetStreamContext, holder: Holder) -> int:
    """Append the takeover message to the journal's stream; its stream sequence."""
    ack = await js.publish(subjects.TAKEOVER, msgspec.json.encode(holder),
                           stream=subjects.STREAM,
                           headers={"Nats-Msg-Id": f"takeover:{uuid.uuid4().hex}"})
    return int(ack.seq)


async def last_takeover(js: JetStreamContext) -> Holder | None:
    """Who took over last, as the journal's stream says."""
    try:
        msg = await js.get_last_msg(subjects.STREAM, subjects.TAKEOVER)
    except NotFoundError:
        return None
    return _holder_decoder.decode(msg.data or b"")


Job = Callable[[], Coroutine[Any, Any, None]]


class Leadership:
    """The role loop: a standby follows the journal and tries for the lease; the leader
    renews it and runs the jobs only a leader runs (market data, session closes)."""

    def __init__(self, nats: Nats, redis: Redis, lease: Lease, sequencer: Sequencer) -> None:
        self.nats, self.redis, self.lease, self.sequencer = nats, redis, lease, sequencer
        self.follower = Follower(nats, sequencer)
        self.leader_url: str | None = None  # as last read, for NOT_LEADER answers
        self.commanding = False  # took over, until it steps down
        self.started = time.monotonic()
        self.deposed = asyncio.Event()  # the journal shows a later takeover than ours
        sequencer.leading = self.leading
        sequencer.confirm_lead = self.confirm
        sequencer.on_replayed = self.follower.note
        sequencer.leader_url = lambda: self.leader_url
        metrics.ROLE.labels("leader").set_function(lambda: int(self.leading()))
        metrics.ROLE.labels("standby").set_function(lambda: int(not self.leading()))

    def leading(self) -> bool:
        """Taking commands: took over, and the lease is still ours by our own clock."""
        return self.commanding and self.lease.held()

    async def confirm(self) -> None:
        """After a rebuild, before commands are taken again: if the journal holds a
        takeover later than ours (ours was fenced: the lease has moved on, whatever our
        clock says), stop leading at once and step down."""
        if not self.commanding:
            return
        last = await last_takeover(self.nats.jetstream())
        if last is not None and last.instance != self.lease.me.instance:
            log.warning("deposed: another instance took over", leader=last.url)
            self.commanding = False
            self.leader_url = last.url
            self.deposed.set()

    async def begin(self) -> None:
        """At start-up, once the state is recovered: lead at once if no one does, so that
        an instance on its own is ready when it starts serving."""
        try:
            if await self.lease.acquire():
                await self._take_over()
            else:
                holder = await self.lease.leader()
                self.leader_url = None if holder is None else holder.url
        except Exception as error:  # `run` tries again
            log.warning("no lease at start-up", error=repr(error))

    async def run(self, jobs: dict[str, Job]) -> None:
        """Follow, lead, step down, follow again: for as long as the service runs."""
        await self.follower.watch_published()
        try:
            while True:
                if not self.commanding:
                    await self._stand_by()
                    await self._take_over()
                if self.commanding:
                    await self._lead(jobs)
        finally:
            self.commanding = False
            await self.lease.release()
            await self.follower.close()

    async def _stand_by(self) -> None:
        """Follow the journal until the lease is won."""
        self.follower.start()
        failing = False
        try:
            while True:
                try:
                    # Just started (a killed leader restarted, say): let a standby that
                    # has followed the leader's trade updates win the lease first.
                    seasoned = time.monotonic() - self.started >= NEWCOMER
                    if seasoned and await self.lease.acquire():
                        return
                    holder = await self.lease.leader()
                    self.leader_url = None if holder is None else holder.url
                    failing = False
                except Exception as error:  # NATS away: keep following what we can
                    metrics.LEASE_FAILURES.inc()
                    if not failing:
                        log.warning("lease unavailable", error=repr(error))
                    failing = True
                await asyncio.sleep(POLL)
        finally:
            await self.follower.stop()

    async def _take_over(self) -> None:
        """With the lease won: take commands from the journal's end.

        The takeover message goes first: from then on the old leader can append nothing,
        so the journal's end read after it is final, and the chain starts there.
        """
        started = time.monotonic()
        self.leader_url = self.lease.me.url
        try:
            await self.sequencer.settled()
            fence = await append_takeover(self.nats.jetstream(), self.lease.me)
            reached = await self.follower.catch_up()
            if reached < fence:
                raise RuntimeError(f"the journal ends at {reached}, before the takeover")
            await self.follower.published_before(self.redis)
            self.sequencer.announce(self.follower.unpublished())
            self.sequencer.lead()
        except Exception as error:
            log.error("takeover failed", error=repr(error))
            await self._step_down("takeover failed")
            return
        self.deposed.clear()
        self.commanding = True
        metrics.STANDBY_LAG.set(0)
        metrics.TAKEOVERS.inc()
        log.info("leading", stream_seq=self.sequencer.position,
                 takeover_seconds=round(time.monotonic() - started, 3))

    async def _lead(self, jobs: dict[str, Job]) -> None:
        """Run the leader's jobs while the lease is renewed, then step down."""
        tasks = [asyncio.create_task(supervise(name, job)) for name, job in jobs.items()]
        try:
            await self._renew()
        finally:
            await stop_tasks(tasks)
        await self._step_down("deposed" if self.deposed.is_set() else "lease lost")

    async def _renew(self) -> None:
        """Renew every third of the lease's life until a renewal is refused (someone
        else took the lease, or it expired: either way it is no longer ours)."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.lease.ttl / 3):
                    await self.deposed.wait()
            if self.deposed.is_set():
                return
            try:
                if not await self.lease.renew():
                    return
            except Exception as error:  # proves nothing: try again (no command is taken
                metrics.LEASE_FAILURES.inc()  # once the lease has lapsed by our clock)
                log.warning("lease renewal failed", error=repr(error), held=self.lease.held())

    async def _step_down(self, why: str) -> None:
        self.commanding = False
        await self.lease.release()
        self.leader_url = None
        log.warning("stepping down", reason=why)
        self.sequencer.step_down()
