"""Create or revoke an API key from a shell (SPEC 8), e.g. the first admin key.

    python -m ops.keys create --role admin [--user UUID]
    python -m ops.keys revoke KEY_ID

Reads the services' EX_ settings (EX_NATS_URL, EX_SECRET_KEY). `create` prints
{"key_id", "secret", "user_id", "role"} once, on stdout, and nowhere else; a new user
id when --user is not given.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from typing import get_args

import msgspec
import nats

from common import keys
from common.config import PREFIX, Settings, load_settings
from common.keys import Role, SecretBox


async def create(settings: Settings, role: Role, user_id: str | None) -> keys.IssuedKey:
    box = SecretBox(_secret_key(settings))
    connection = await nats.connect(settings.nats_url)
    try:
        return await keys.create_key(await keys.bucket(connection.jetstream()), box, role,
                                     user_id)
    finally:
        await connection.drain()


async def revoke(settings: Settings, key_id: str) -> keys.KeyRecord:
    connection = await nats.connect(settings.nats_url)
    try:
        return await keys.revoke_key(await keys.bucket(connection.jetstream()), key_id)
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
    gone = commands.add_parser("revoke", help="revoke a key in every service")
    gone.add_argument("key_id")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ValueError as error:
        raise SystemExit(str(error)) from None
    if args.command == "create":
        issued = asyncio.run(create(settings, args.role, args.user))
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
