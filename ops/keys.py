"""Create or revoke an API key from a shell, e.g. the first admin key.

    python -m ops.keys create --role admin [--user UUID]
    python -m ops.keys first-admin    # an admin key only if none is live yet
    python -m ops.keys revoke KEY_ID

Reads the services' EX_ settings: EX_NATS_URL, EX_SECRET_KEY, and EX_NATS_USER and
EX_NATS_PASSWORD of a NATS user that may write the keys bucket (`admin`, or none on a
server without users). `create` prints {"key_id", "secret", "user_id", "role"} once, on
stdout, and nowhere else; a new user id when --user is not given. `first-admin` prints
the same for a new admin key, or nothing when a live admin key exists.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from typing import get_args

import msgspec

from common import keys, natsconn
from common.config import PREFIX, Settings, load_settings
from common.keys import Role, SecretBox


async def create(settings: Settings, role: Role | None,
                 user_id: str | None) -> keys.IssuedKey | None:
    """A key of `role`, or with no role the first admin key if there is none yet."""
    box = SecretBox(_secret_key(settings))
    connection = await natsconn.connect(settings, "ops.keys")
    try:
        kv = await keys.bucket(connection.jetstream(), settings.nats_replicas)
        if role is None:
            return await keys.first_admin_key(kv, box)
        return await keys.create_key(kv, box, role, user_id)
    finally:
        await connection.drain()


async def revoke(settings: Settings, key_id: str) -> keys.KeyRecord:
    connection = await natsconn.connect(settings, "ops.keys")
    try:
        kv = await keys.bucket(connection.jetstream(), settings.nats_replicas)
        return await keys.revoke_key(kv, key_id)
    finally:
        await connection.drain()


def _secret_key(settings: Settings) -> str:
    if settings.secret_key is None:
        raise SystemExit(f"{PREFIX}SECRET_KEY is not set: it encrypts the key's secret")
    return settings.secret_key


def _user(text: str) -> str:
    return str(uuid.UUID(text))  # argparse turns the ValueError into a usage error


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.keys",
                                     description=(__doc__ or "").split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("create", help="create a key and print it with its secret")
    new.add_argument("--role", required=True, choices=get_args(Role))
    new.add_argument("--user", type=_user, help="the user's UUID (default: a new user)")
    first = commands.add_parser("first-admin",
                                help="create and print an admin key if none is live")
    first.set_defaults(role=None, user=None)
    gone = commands.add_parser("revoke", help="revoke a key in every service")
    gone.add_argument("key_id")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ValueError as error:
        raise SystemExit(str(error)) from None
    if args.command in ("create", "first-admin"):
        issued = asyncio.run(create(settings, args.role, args.user))
        if issued is not None:
            sys.stdout.write(msgspec.json.encode(issued).decode() + "\n")
        return
    try:
        record = asyncio.run(revoke(settings, args.key_id))
    except (keys.UnknownKey, keys.KeyAlreadyRevoked) as error:
        raise SystemExit(f"{type(error).__name__}: {args.key_id}") from None
    sys.stdout.write(f"revoked {record.key_id} (user {record.user_id}) at "
                     f"{record.revoked_at}\n")


if __name__ == "__main__":
    main()
