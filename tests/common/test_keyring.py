"""Keys in the JetStream bucket and every service's keyring following it (real NATS)."""

from __future__ import annotations

import contextlib
import hmac
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import nats
import pytest
import structlog
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError
from nats.js.kv import KeyValue

from common import keys, subjects
from common.config import Settings
from common.keyring import Keyring
from common.keys import SecretBox
from common.signing import Verifier
from ops.stack import NatsServer, free_port, nats_cluster
from tests.common.auth import SECRET_KEY
from tests.helpers import eventually
from tests.signing import now_ms, sign


@pytest.fixture
async def kv(nc: Nats) -> KeyValue:
    return await keys.bucket(nc.jetstream())


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(SECRET_KEY)


async def test_a_created_key_is_stored_sealed_and_verifies_everywhere(
        nc: Nats, kv: KeyValue, box: SecretBox) -> None:
    issued = await keys.create_key(kv, box, "trader")
    stored = (await kv.get(issued.key_id)).value or b""
    assert issued.secret.encode() not in stored
    assert keys.decode_record(stored).user_id == issued.user_id
    rings = [Keyring(box) for _ in range(3)]  # one per service
    for ring in rings:
        async with ring.watching(nc):
            live = ring.get(issued.key_id)
            assert live is not None
            assert live.identity == keys.Identity(issued.key_id, issued.user_id, "trader")
            mac = live.mac.copy()  # keyed with the secret
            mac.update(b"signed")
            assert mac.digest() == hmac.digest(issued.secret.encode(), b"signed", "sha256")


async def test_a_revoked_key_stops_working_within_a_second(nc: Nats, kv: KeyValue,
                                                           box: SecretBox) -> None:
    keep = await keys.create_key(kv, box, "viewer")
    issued = await keys.create_key(kv, box, "trader", user_id=keep.user_id)
    keyring = Keyring(box)
    verifier = Verifier(keyring, 5.0)
    async with keyring.watching(nc):
        stamp = now_ms()
        verifier.verify(issued.key_id, stamp, sign(issued.secret, stamp, "GET", "/ws/"),
                        "GET", "/ws/", b"")
        record = await keys.revoke_key(kv, issued.key_id)
        revoked = time.monotonic()
        await eventually(lambda: keyring.get(issued.key_id) is None, timeout=1.0,
                         interval=0.005)
        took = time.monotonic() - revoked
        assert keyring.get(keep.key_id) is not None
    assert record.revoked_at is not None
    assert took < 1.0


async def test_a_key_created_or_deleted_while_watching_is_followed(
        nc: Nats, kv: KeyValue, box: SecretBox) -> None:
    keyring = Keyring(box)
    async with keyring.watching(nc):
        issued = await keys.create_key(kv, box, "admin")
        await eventually(lambda: keyring.get(issued.key_id) is not None, timeout=1.0)
        await kv.delete(issued.key_id)
        await eventually(lambda: keyring.get(issued.key_id) is None, timeout=1.0)


async def test_a_keyring_started_after_a_revocation_never_holds_the_key(
        nc: Nats, kv: KeyValue, box: SecretBox) -> None:
    issued = await keys.create_key(kv, box, "trader")
    await keys.revoke_key(kv, issued.key_id)
    keyring = Keyring(box)
    async with keyring.watching(nc):
        assert keyring.get(issued.key_id) is None


async def test_revoking_twice_or_an_unknown_key_changes_nothing(kv: KeyValue,
                                                                box: SecretBox) -> None:
    issued = await keys.create_key(kv, box, "trader")
    first = await keys.revoke_key(kv, issued.key_id)
    with pytest.raises(keys.KeyAlreadyRevoked):
        await keys.revoke_key(kv, issued.key_id)
    assert keys.decode_record((await kv.get(issued.key_id)).value or b"") == first
    with pytest.raises(keys.UnknownKey):
        await keys.revoke_key(kv, str(uuid.uuid4()))


async def test_a_record_sealed_under_another_secret_key_is_skipped(
        nc: Nats, kv: KeyValue, box: SecretBox) -> None:
    foreign = await keys.create_key(kv, SecretBox("another-secret-key-of-32-characters!"),
                                    "admin")
    mine = await keys.create_key(kv, box, "trader")
    keyring = Keyring(box)
    with structlog.testing.capture_logs() as logs:
        async with keyring.watching(nc):
            assert keyring.get(foreign.key_id) is None
            assert keyring.get(mine.key_id) is not None
    assert {"event": "unreadable key record skipped", "key_id": foreign.key_id,
            "reason": "ValueError", "log_level": "error"} in logs


async def test_secrets_appear_in_no_log_and_no_repr(nc: Nats, kv: KeyValue,
                                                    box: SecretBox) -> None:
    settings = Settings(auth="on", secret_key=SECRET_KEY)
    with structlog.testing.capture_logs() as logs:
        issued = await keys.create_key(kv, box, "trader")
        keyring = Keyring(box)
        async with keyring.watching(nc):
            stamp = now_ms()
            Verifier(keyring, 5.0).verify(
                issued.key_id, stamp, sign(issued.secret, stamp, "GET", "/orders/"),
                "GET", "/orders/", b"")
            live = keyring.get(issued.key_id)
        record = await keys.revoke_key(kv, issued.key_id)
    stored = keys.decode_record((await kv.get(issued.key_id)).value or b"")
    shown = " ".join([repr(logs), repr(issued), repr(live), repr(record), repr(stored),
                      repr(box), repr(keyring), repr(settings)])
    for secret in (issued.secret, stored.sealed_secret, SECRET_KEY):
        assert secret not in shown
    assert issued.key_id in repr(issued)


async def test_after_nats_restarts_a_revocation_still_bites_within_a_second(
        private_nats: NatsServer, box: SecretBox) -> None:
    """The server forgets the watch's consumer when it restarts; the keyring must watch
    again on reconnection rather than wait for nats-py to miss heartbeats."""
    nc = await nats.connect(private_nats.url, reconnect_time_wait=0.1,
                            max_reconnect_attempts=-1)
    try:
        kv = await keys.bucket(nc.jetstream())
        issued = await keys.create_key(kv, box, "trader")
        keyring = Keyring(box)
        async with keyring.watching(nc):
            private_nats.stop()
            private_nats.start()
            await eventually(lambda: nc.stats["reconnects"] == 1 and nc.is_connected)
            await eventually(lambda: keys.revoke_key(kv, issued.key_id), timeout=5.0,
                             interval=0.1)  # JetStream may take a moment to come back
            revoked = time.monotonic()
            await eventually(lambda: keyring.get(issued.key_id) is None, timeout=1.0,
                             interval=0.005)
            assert time.monotonic() - revoked < 1.0
    finally:
        await nc.close()


async def has_leader(js: JetStreamContext, stream: str) -> bool:
    """Whether `stream`'s Raft group has elected its leader: until then, on a cluster just
    formed, nothing it stores gets an answer."""
    try:
        info = await js.stream_info(stream)
    except NoStreamResponseError:
        return False
    return info.cluster is not None and info.cluster.leader is not None


async def test_on_a_cluster_the_keys_bucket_gets_the_copies_asked_for(
        tmp_path: Path, box: SecretBox) -> None:
    """Every service's access control reads the bucket: on a three-node cluster it is
    kept three times, also when an older version had made it with one copy (svc_trades,
    which owns the keys, gives it the copies at its start)."""
    nodes = nats_cluster(tmp_path, [free_port() for _ in range(3)],
                         [free_port() for _ in range(3)])
    with contextlib.ExitStack() as stack:
        for node in nodes:
            stack.callback(node.stop)
        with ThreadPoolExecutor(len(nodes)) as starting:  # a node is ready with a majority
            list(starting.map(lambda node: node.start(), nodes))
        nc = await nats.connect(servers=[node.url for node in nodes])
        try:
            js = nc.jetstream()
            older = await keys.bucket(js)  # one copy, as before
            await eventually(partial(has_leader, js, subjects.KEYS_STREAM), timeout=10)
            issued = await keys.create_key(older, box, "trader")
            assert (await js.stream_info(subjects.KEYS_STREAM)).config.num_replicas == 1
            assert (await keys.bucket(js, replicas=3)) is not None  # a reader changes nothing
            assert (await js.stream_info(subjects.KEYS_STREAM)).config.num_replicas == 1
            kv = await keys.owned_bucket(js, replicas=3)  # svc_trades gives it more
            assert (await js.stream_info(subjects.KEYS_STREAM)).config.num_replicas == 3
            await eventually(partial(has_leader, js, subjects.KEYS_STREAM), timeout=10)
            assert (await kv.get(issued.key_id)).value is not None
        finally:
            await nc.close()
