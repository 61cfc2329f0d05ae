"""Admin routes that create and revoke API keys: `POST /admin/keys/` and
`DELETE /admin/keys/{key_id}/`, admin role only.

The keys bucket is the store of record (see `common.keys`); these handlers write it and
every service's keyring follows. svc_trades keeps no table of keys: the bucket already
holds each key's user, role, creation and revocation, and a table would be a second
copy to keep in step. Each change is logged with the admin key that made it, never with
a secret.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import structlog
from aiohttp import web
from nats.js.kv import KeyValue

from common import keys
from common.access import identity, requires
from common.http import (
    UUID_TEXT,
    ApiError,
    add_routes,
    json_response,
    parse_uuid,
    read_json,
    uuid_path,
)
from common.keys import Role, SecretBox

log = structlog.get_logger(__name__)

KEYS_BUCKET = web.AppKey("keys_bucket", KeyValue)
SECRET_BOX = web.AppKey("secret_box", SecretBox)


class NewKey(msgspec.Struct, forbid_unknown_fields=True):
    role: Role
    # A UUID's text form only, as the document says (`uuid.UUID` would read more forms).
    user_id: Annotated[str, msgspec.Meta(pattern=f"^{UUID_TEXT}$",
                                         extra_json_schema={"format": "uuid"})] | None = None


class RevokedKey(msgspec.Struct):
    key_id: str
    user_id: str
    role: Role
    created_at: str
    revoked_at: str | None


def add_key_routes(app: web.Application, box: SecretBox) -> None:
    """Mount the admin key routes; `app[KEYS_BUCKET]` must be set before serving
    (`await common.keys.bucket(js)` in the context that connects NATS)."""
    app[SECRET_BOX] = box
    add_routes(app, [("POST", "/admin/keys/", create_key),
                     ("DELETE", "/admin/keys/{key_id}/", revoke_key)])


@requires("admin")
async def create_key(request: web.Request) -> web.Response:
    body = await read_json(request, NewKey)
    user_id = None if body.user_id is None else parse_uuid(body.user_id)
    issued = await keys.create_key(request.app[KEYS_BUCKET], request.app[SECRET_BOX],
                                   body.role, user_id)
    log.info("key created", key_id=issued.key_id, user_id=issued.user_id, role=issued.role,
             by=_admin(request))
    return json_response(issued, 201)


@requires("admin")
async def revoke_key(request: web.Request) -> web.Response:
    key_id = uuid_path(request, "key_id")
    try:
        record = await keys.revoke_key(request.app[KEYS_BUCKET], key_id)
    except keys.UnknownKey:
        raise ApiError(404, "KEY_NOT_FOUND", "no such key", {"key_id": key_id}) from None
    except keys.KeyAlreadyRevoked:
        raise ApiError(409, "KEY_ALREADY_REVOKED", "the key was already revoked",
                       {"key_id": key_id}) from None
    log.info("key revoked", key_id=key_id, user_id=record.user_id, by=_admin(request))
    return json_response(RevokedKey(record.key_id, record.user_id, record.role,
                                    record.created_at, record.revoked_at))


def _admin(request: web.Request) -> str | None:
    caller = identity(request)
    return None if caller is None else caller.key_id
