"""API keys: who holds them, what they may do, and their one store of record.

A key belongs to one user and has one role. Its record lives in the JetStream
key-value bucket `EXCHANGE_KEYS`, under the key id, as JSON; the secret in it is sealed
with Fernet under a key derived from `EX_SECRET_KEY`, so neither the bucket nor a backup
of it reveals a secret. The bucket is the store of record: every service watches it (see
`common.keyring`), which makes a revocation visible everywhere within a second without a
database round trip per request. A revoked key keeps its record with `revoked_at` set,
so the bucket itself answers who held which key and when it stopped working; an audit
table in svc_trades can be added later by projecting the bucket's history, and is not
needed for verifying requests.

Secrets are shown once, in the `IssuedKey` that creating a key returns; no `repr` here
shows a secret, sealed or not.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
import uuid
from typing import Literal

import msgspec
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nats.js.client import JetStreamContext
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
)
from nats.js.kv import KeyValue

from common import subjects
from common.views import timestamp

Role = Literal["viewer", "trader", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "trader", "admin")  # each may do what those before may

KEY_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_HKDF_INFO = b"exchange-core api key secrets"


class Identity(msgspec.Struct, frozen=True):
    """Who sent a verified request."""

    key_id: str
    user_id: str
    role: Role


class KeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A key as the bucket stores it."""

    key_id: str
    user_id: str
    role: Role
    sealed_secret: str  # Fernet token of the secret
    created_at: str  # RFC 3339 UTC
    revoked_at: str | None = None

    def __repr__(self) -> str:
        return (f"KeyRecord(key_id={self.key_id!r}, user_id={self.user_id!r}, "
                f"role={self.role!r}, created_at={self.created_at!r}, "
                f"revoked_at={self.revoked_at!r})")


class IssuedKey(msgspec.Struct, frozen=True):
    """What creating a key answers, the only time its secret is shown."""

    key_id: str
    secret: str
    user_id: str
    role: Role

    def __repr__(self) -> str:
        return (f"IssuedKey(key_id={self.key_id!r}, secret='***', user_id={self.user_id!r}, "
                f"role={self.role!r})")


class UnknownKey(LookupError):
    """No key has this id."""


class KeyAlreadyRevoked(Exception):
    """The key was revoked before; revoking it again changes nothing."""


class SecretBox:
    """Seals and opens key secrets with a Fernet key derived (HKDF-SHA256) from the
    operator's `EX_SECRET_KEY`, so any long random string serves as that setting."""

    def __init__(self, secret_key: str) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=_HKDF_INFO).derive(secret_key.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def __repr__(self) -> str:
        return "SecretBox(***)"

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        """The secret; ValueError when it was sealed under another `EX_SECRET_KEY`."""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise ValueError("sealed under another EX_SECRET_KEY") from None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(KeyRecord)


def encode_record(record: KeyRecord) -> bytes:
    return _encoder.encode(record)


def decode_record(data: bytes) -> KeyRecord:
    return _decoder.decode(data)


async def bucket(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    """The keys bucket, created on first use with `replicas` copies (3 on a NATS
    cluster: every service's access control reads it) and file storage, so keys survive
    restarts."""
    try:
        return await js.key_value(subjects.KEYS_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(bucket=subjects.KEYS_BUCKET, replicas=replicas,
                                         description="API keys (exchange-core)")


async def owned_bucket(js: JetStreamContext, replicas: int) -> KeyValue:
    """`bucket`, for svc_trades, which owns the keys: one made with fewer copies (before
    replicas were asked for) is given `replicas`, which changes no key. Only its NATS
    user may change the bucket's config."""
    kv = await bucket(js, replicas)
    info = await js.stream_info(subjects.KEYS_STREAM)
    if (info.config.num_replicas or 1) < replicas:
        info.config.num_replicas = replicas
        await js.update_stream(info.config)
    return kv


async def create_key(kv: KeyValue, box: SecretBox, role: Role,
                     user_id: str | None = None) -> IssuedKey:
    """A new key for `user_id` (a new user when None), stored sealed; the answer is the
    only place its secret appears."""
    issued = IssuedKey(key_id=str(uuid.uuid4()), secret=secrets.token_urlsafe(32),
                       user_id=user_id or str(uuid.uuid4()), role=role)
    record = KeyRecord(key_id=issued.key_id, user_id=issued.user_id, role=role,
                       sealed_secret=box.seal(issued.secret), created_at=_now())
    await kv.create(issued.key_id, encode_record(record))
    return issued


async def first_admin_key(kv: KeyValue, box: SecretBox) -> IssuedKey | None:
    """A new admin key when the bucket holds no live one, else None: what `./ops/run`
    creates and prints once on its first start with auth on."""
    try:
        key_ids = await kv.keys()
    except NoKeysError:
        key_ids = []
    for key_id in key_ids:
        record = decode_record((await kv.get(key_id)).value or b"")
        if record.role == "admin" and record.revoked_at is None:
            return None
    return await create_key(kv, box, "admin")


async def revoke_key(kv: KeyValue, key_id: str) -> KeyRecord:
    """Mark the key revoked; every watching service drops it within a second.

    Raises UnknownKey or KeyAlreadyRevoked. The update is conditional on the revision
    read, so two concurrent revocations store one `revoked_at`.
    """
    while True:
        try:
            entry = await kv.get(key_id)
        except KeyNotFoundError:  # never created, or deleted from the bucket by hand
            raise UnknownKey(key_id) from None
        record = decode_record(entry.value or b"")
        if record.revoked_at is not None:
            raise KeyAlreadyRevoked(key_id)
        revoked = msgspec.structs.replace(record, revoked_at=_now())
        try:
            await kv.update(key_id, encode_record(revoked), last=entry.revision)
        except KeyWrongLastSequenceError:
            continue  # changed since we read it: read again
        return revoked


def _now() -> str:
    return timestamp(time.time_ns())
