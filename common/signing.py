"""Verifying a signed request, for HTTP requests and the WebSocket `auth` message.

The client sends its key id, a timestamp (milliseconds since the epoch) and the lowercase
hex HMAC-SHA256, under its secret, of timestamp + METHOD + path with query string (as
sent in the request line) + body. The checks run in an order that leaks nothing:

1. every part present and well formed (401 AUTH_REQUIRED, INVALID_KEY, INVALID_SIGNATURE,
   TIMESTAMP_OUT_OF_WINDOW), which says nothing about any stored key;
2. the timestamp within `EX_AUTH_WINDOW` of our clock (TIMESTAMP_OUT_OF_WINDOW);
3. the signature against the key's secret, in constant time. An unknown or revoked key
   is checked against a stand-in secret and fails the same way as a wrong signature:
   same status, code, message and work, so no answer tells whether a key exists;
4. the signature not seen before (REPLAYED_REQUEST). Only signatures that verified are
   remembered, so nobody can fill the memory with garbage.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections import deque
from collections.abc import Callable

from common.http import ApiError
from common.keyring import Keyring
from common.keys import KEY_ID, Identity

_TIMESTAMP = re.compile(r"^[0-9]{1,16}$")
_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")
# Enough for 13,000 signed requests a second for ten seconds (twice the largest window);
# about 150 bytes each.
REPLAY_CAPACITY = 262_144


def message(timestamp: str, method: str, path_qs: str, body: bytes) -> bytes:
    """The signed string: timestamp + METHOD + path with query string + body."""
    return f"{timestamp}{method.upper()}{path_qs}".encode() + body


def signature(secret: bytes, signed: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of `signed` (what a client sends)."""
    return hmac.digest(secret, signed, "sha256").hex()


def _digest(mac: hmac.HMAC, signed: bytes) -> bytes:
    """HMAC-SHA256 of `signed` under `mac`'s key (`mac` itself stays unused)."""
    copy = mac.copy()
    copy.update(signed)
    return copy.digest()


def _unauthorized(code: str, text: str) -> ApiError:
    return ApiError(401, code, text)


class ReplayGuard:
    """Signatures accepted lately, each forgotten once its timestamp can no longer pass
    the window check. Entries arrive in time order with the same lifetime, so the oldest
    is always first and forgetting is a pop from the front. Expiries and digests sit in
    two deques of plain floats and bytes rather than one of tuples: tens of thousands of
    tuples would be objects every full garbage collection has to visit."""

    def __init__(self, lifetime: float, capacity: int = REPLAY_CAPACITY) -> None:
        self._lifetime = lifetime
        self._capacity = capacity
        self._seen: set[bytes] = set()
        self._expiries: deque[float] = deque()  # oldest first
        self._digests: deque[bytes] = deque()  # in the same order

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, digest: bytes, now: float) -> bool:
        """True the first time `digest` is seen within its lifetime, False after."""
        expiries, digests = self._expiries, self._digests
        while expiries and expiries[0] <= now:
            expiries.popleft()
            self._seen.discard(digests.popleft())
        if digest in self._seen:
            return False
        if len(self._seen) >= self._capacity:
            # Failing closed: forgetting an unexpired signature would allow its replay.
            raise ApiError(503, "UNAVAILABLE", "too many signed requests; retry shortly")
        self._seen.add(digest)
        expiries.append(now + self._lifetime)
        digests.append(digest)
        return True


class Verifier:
    """Turns a signed request's parts into the Identity of its key, or a 401 ApiError."""

    def __init__(self, keyring: Keyring, window: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._keyring = keyring
        self._window_ms = window * 1000
        self._clock = clock
        # A timestamp accepted now may be up to one window ahead: it can pass the check
        # until two windows from now, so the guard remembers it that long.
        self._guard = ReplayGuard(2 * window)
        # For keys that do not exist: the same work as for a key that does.
        self._stand_in = hmac.new(secrets.token_urlsafe(32).encode(), digestmod="sha256")

    def verify(self, key_id: str | None, timestamp: str | None, sign: str | None,
               method: str, path_qs: str, body: bytes) -> Identity:
        if not key_id or not timestamp or not sign:
            raise _unauthorized("AUTH_REQUIRED", "EX-ACCESS-KEY, EX-ACCESS-TIMESTAMP and "
                               "EX-ACCESS-SIGN are required")
        if KEY_ID.match(key_id) is None:
            raise _unauthorized("INVALID_KEY", "the key id is not valid")
        if _SIGNATURE.match(sign) is None:
            raise _unauthorized("INVALID_SIGNATURE",
                               "the signature must be 64 lowercase hex digits")
        now = self._clock()
        if (_TIMESTAMP.match(timestamp) is None
                or abs(int(timestamp) - now * 1000) > self._window_ms):
            raise _unauthorized("TIMESTAMP_OUT_OF_WINDOW",
                               f"the timestamp must be milliseconds since the epoch within "
                               f"{self._window_ms / 1000:g} s of the server's clock")
        live = self._keyring.get(key_id)
        mac = self._stand_in if live is None else live.mac
        given = bytes.fromhex(sign)  # 64 lowercase hex digits, checked above
        expected = _digest(mac, message(timestamp, method, path_qs, body))
        if not hmac.compare_digest(expected, given) or live is None:
            raise _unauthorized("INVALID_SIGNATURE", "the key or the signature is not valid")
        if not self._guard.admit(given, now):
            raise _unauthorized("REPLAYED_REQUEST", "this signature was already used")
        return live.identity

    def verify_socket(self, key_id: object, timestamp: object, sign: object) -> Identity:
        """The WebSocket `auth` message's fields as JSON decoded them (`key`, `timestamp`
        as a string or an integer, `signature`), signed over timestamp + "GET" + "/ws/"."""
        if isinstance(timestamp, int) and not isinstance(timestamp, bool):
            timestamp = str(timestamp)
        return self.verify(_text(key_id), _text(timestamp), _text(sign), "GET", "/ws/", b"")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
