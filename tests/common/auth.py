"""Keys for the access tests without a NATS server: records applied to a Keyring the way
the bucket watch applies them."""

from __future__ import annotations

import uuid

from nats.js.kv import KV_DEL, KeyValue

from common import keys
from common.keyring import Keyring
from common.keys import IssuedKey, KeyRecord, Role, SecretBox

SECRET_KEY = "test-secret-key-of-at-least-32-characters"


def issue(keyring: Keyring, box: SecretBox, role: Role = "trader") -> IssuedKey:
    """A new key, as `keys.create_key` makes it, put straight into `keyring`."""
    issued = IssuedKey(str(uuid.uuid4()), f"secret-{uuid.uuid4().hex}", str(uuid.uuid4()),
                       role)
    keyring.apply(entry(record_of(issued, box)))
    return issued


def record_of(issued: IssuedKey, box: SecretBox, revoked_at: str | None = None) -> KeyRecord:
    return KeyRecord(key_id=issued.key_id, user_id=issued.user_id, role=issued.role,
                     sealed_secret=box.seal(issued.secret), created_at="2026-12-04T10:00:00Z",
                     revoked_at=revoked_at)


def entry(record: KeyRecord, deleted: bool = False) -> KeyValue.Entry:
    return KeyValue.Entry(bucket="EXCHANGE_KEYS", key=record.key_id,
                          value=b"" if deleted else keys.encode_record(record),
                          revision=1, delta=0, created=None,
                          operation=KV_DEL if deleted else None)
