"""Signing in on a WebSocket connection, for the private channels (`orders`).

A connection signs in with an `auth` message: key id, timestamp and the signature of
timestamp + "GET" + "/ws/", checked exactly as a signed HTTP request is (same window, same
replay protection, same refusal codes, the same answer whether or not a key exists).
Failed attempts count against the client address's failed-authentication limit, which the
REST routes share: once it is spent, `auth` is refused with RATE_LIMITED and its signature
is not even looked at.

A connection stays signed in only while its key lives. `Gate.watch` looks up every
signed-in connection's key in the keyring several times a second; the keyring follows
the keys bucket, so a revoked key's private subscriptions end well within a second of
the revocation, and the client is told why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from common.http import ApiError
from common.keyring import Keyring
from common.keys import Identity
from common.ratelimit import Limiter
from common.signing import Verifier
from svc_stream.protocol import Auth, BadRequest

REVOCATION_CHECK = 0.2  # seconds between looks at the signed-in connections' keys


class SignedIn(Protocol):
    identity: Identity | None

    def sign_out(self, reason: str) -> None: ...


class Gate:
    def __init__(self, keyring: Keyring, verifier: Verifier, limiter: Limiter) -> None:
        self.keyring, self.verifier, self.limiter = keyring, verifier, limiter

    async def sign_in(self, address: str, request: Auth) -> Identity:
        """The key's identity, or BadRequest with the refusal's code."""
        failures = self.limiter.auth_failures_left(address)
        if not failures.allowed:
            raise BadRequest("too many failed authentications from this address; retry in "
                             f"{max(1, failures.reset)} s", "RATE_LIMITED")
        try:
            return self.verifier.verify_socket(request.key, request.timestamp,
                                               request.signature)
        except ApiError as error:
            if error.status == 401:
                self.limiter.hit_auth_failure(address)
            raise BadRequest(error.message, error.code) from None

    async def watch(self, sessions: Iterable[SignedIn]) -> None:
        """Sign out every connection whose key was revoked (or deleted), until cancelled."""
        while True:
            await asyncio.sleep(REVOCATION_CHECK)
            for session in list(sessions):
                identity = session.identity
                if identity is not None and self.keyring.get(identity.key_id) is None:
                    session.sign_out("the key was revoked: private subscriptions ended")
