"""Creating and revoking keys: the admin routes and `python -m ops.keys` (real NATS and
Redis), wired as svc_trades will wire them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats
import pytest
import redis.asyncio
import structlog
from aiohttp import web

from common import keys
from common.access import protect
from common.config import Settings
from common.http import add_routes, json_response, new_app
from common.keyring import Keyring
from common.keys import SecretBox
from common.ratelimit import Limiter
from common.signing import Verifier
from ops.stack import NatsServer, RedisServer
from svc_trades.keys import KEYS_BUCKET, add_key_routes
from tests.common.auth import SECRET_KEY
from tests.helpers import AppClient, eventually
from tests.signing import signed_headers

MakeClient = Callable[..., Awaitable[AppClient]]
REDIS_DB = 12


class Key:
    """A key as a client holds it."""

    def __init__(self, answer: dict[str, str]) -> None:
        self.key_id, self.secret = answer["key_id"], answer["secret"]
        self.user_id, self.role = answer["user_id"], answer["role"]

    def headers(self, method: str, path: str, body: bytes = b"") -> dict[str, str]:
        return signed_headers(self.key_id, self.secret, method, path, body)


@pytest.fixture
async def settings(private_nats: NatsServer, redis_server: RedisServer) -> Settings:
    url = redis_server.url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    async with redis.asyncio.from_url(url) as client:
        await client.flushdb()
    return Settings(auth="on", secret_key=SECRET_KEY, nats_url=private_nats.url,
                    redis_url=url)


@pytest.fixture
async def client(settings: Settings, aiohttp_client: MakeClient) -> AppClient:
    assert settings.secret_key is not None
    box = SecretBox(settings.secret_key)
    keyring = Keyring(box)
    limiter = Limiter(settings)
    app = new_app(settings.max_body_bytes)

    async def whoami(request: web.Request) -> web.Response:
        return json_response({"ok": True})

    add_routes(app, [("GET", "/orders/", whoami)])
    add_key_routes(app, box)
    protect(app, settings, Verifier(keyring, settings.auth_window), limiter, public=())

    async def keys_context(app: web.Application) -> AsyncIterator[None]:
        connection = await nats.connect(settings.nats_url)
        js = connection.jetstream()
        app[KEYS_BUCKET] = await keys.bucket(js)
        async with keyring.watching(connection):
            yield
        await connection.close()
        await limiter.close()

    app.cleanup_ctx.append(keys_context)
    return await aiohttp_client(app)


async def cli(settings: Settings, *args: str,
              secret_key: bool = True) -> tuple[int | None, str, str]:
    """`python -m ops.keys ARGS`: its exit status, stdout and stderr."""
    env = {**os.environ, "EX_NATS_URL": settings.nats_url}
    if secret_key:
        env["EX_SECRET_KEY"] = settings.secret_key or ""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ops.keys", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


async def create_with_cli(settings: Settings, *args: str) -> Key:
    status, out, err = await cli(settings, "create", *args)
    assert status == 0, err
    answer = json.loads(out)
    assert set(answer) == {"key_id", "secret", "user_id", "role"}
    assert answer["secret"] not in err
    return Key(answer)


async def post(client: AppClient, key: Key, body: object) -> Any:
    raw = json.dumps(body).encode()
    return await client.post("/admin/keys/", data=raw,
                             headers=key.headers("POST", "/admin/keys/", raw))


async def accepted_by(client: AppClient, key: Key) -> bool:
    response = await client.get("/orders/", headers=key.headers("GET", "/orders/"))
    return response.status == 200


async def test_the_cli_creates_a_key_the_middleware_accepts(settings: Settings,
                                                            client: AppClient) -> None:
    admin = await create_with_cli(settings, "--role", "admin")
    uuid.UUID(admin.user_id)  # a new user
    await eventually(lambda: accepted_by(client, admin), timeout=1.0)
    response = await client.get("/orders/", headers=admin.headers("GET", "/orders/?a=1"))
    assert response.status == 401  # signed for another path
    user = str(uuid.uuid4())
    viewer = await create_with_cli(settings, "--role", "viewer", "--user", user)
    assert (viewer.user_id, viewer.role) == (user, "viewer")


async def test_the_cli_refuses_bad_arguments_and_a_missing_secret_key(
        settings: Settings) -> None:
    assert (await cli(settings, "create", "--role", "god"))[0] == 2
    assert (await cli(settings, "create", "--role", "admin", "--user", "bob"))[0] == 2
    status, _, err = await cli(settings, "create", "--role", "admin", secret_key=False)
    assert status == 1
    assert "EX_SECRET_KEY" in err


async def test_an_admin_creates_and_revokes_keys_and_revocation_bites_within_a_second(
        settings: Settings, client: AppClient) -> None:
    admin = await create_with_cli(settings, "--role", "admin")
    user = str(uuid.uuid4())
    await eventually(lambda: accepted_by(client, admin), timeout=1.0)
    with structlog.testing.capture_logs() as logs:
        created = await post(client, admin, {"role": "trader", "user_id": user})
        assert created.status == 201
        trader = Key(await created.json())
    assert (trader.user_id, trader.role) == (user, "trader")
    assert trader.secret not in repr(logs)
    assert {"event": "key created", "key_id": trader.key_id, "user_id": user,
            "role": "trader", "by": admin.key_id, "log_level": "info"} in logs

    await eventually(lambda: accepted_by(client, trader), timeout=1.0)
    path = f"/admin/keys/{trader.key_id}/"
    revoked = await client.delete(path, headers=admin.headers("DELETE", path))
    assert revoked.status == 200
    answer = await revoked.json()
    assert (answer["key_id"], answer["user_id"], answer["role"]) == (
        trader.key_id, user, "trader")
    assert answer["revoked_at"] is not None
    assert "secret" not in answer

    async def refused() -> bool:
        return not await accepted_by(client, trader)

    await eventually(refused, timeout=1.0, interval=0.01)
    again = await client.delete(path, headers=admin.headers("DELETE", path))
    assert (again.status, (await again.json())["error"]["code"]) == (409, "KEY_ALREADY_REVOKED")


async def test_admin_routes_refuse_other_roles_and_bad_input(settings: Settings,
                                                             client: AppClient) -> None:
    admin = await create_with_cli(settings, "--role", "admin")
    trader = await create_with_cli(settings, "--role", "trader")
    await eventually(lambda: accepted_by(client, trader), timeout=1.0)
    await eventually(lambda: accepted_by(client, admin), timeout=1.0)
    denied = await post(client, trader, {"role": "admin"})
    assert (denied.status, (await denied.json())["error"]["code"]) == (403, "PERMISSION_DENIED")
    path = f"/admin/keys/{admin.key_id}/"
    denied = await client.delete(path, headers=trader.headers("DELETE", path))
    assert denied.status == 403
    for body, code in [({"role": "god"}, "VALIDATION_ERROR"),
                       ({"role": "admin", "user_id": "bob"}, "VALIDATION_ERROR"),
                       ({"role": "admin", "extra": 1}, "VALIDATION_ERROR")]:
        refused = await post(client, admin, body)
        assert (refused.status, (await refused.json())["error"]["code"]) == (400, code)
    for key_id, status in [(str(uuid.uuid4()), 404), ("nope", 400)]:
        path = f"/admin/keys/{key_id}/"
        response = await client.delete(path, headers=admin.headers("DELETE", path))
        assert response.status == status


async def test_first_admin_makes_one_admin_key_while_none_is_live(settings: Settings) -> None:
    status, out, _ = await cli(settings, "first-admin")
    first = Key(json.loads(out))
    assert (status, first.role) == (0, "admin")
    assert await cli(settings, "first-admin") == (0, "", "")  # one is live: nothing new
    await create_with_cli(settings, "--role", "trader")
    assert (await cli(settings, "revoke", first.key_id))[0] == 0
    status, out, _ = await cli(settings, "first-admin")
    assert Key(json.loads(out)).key_id != first.key_id
    status, _, err = await cli(settings, "revoke", first.key_id)
    assert (status, "KeyAlreadyRevoked" in err) == (1, True)
