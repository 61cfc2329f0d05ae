"""What clients may send on a feed connection, and the control messages they get back.

Requests are tagged msgspec Structs decoded by one Decoder built at import time, so a
malformed frame (however deep or large: frames are bounded by `endpoints.MAX_FRAME`)
costs one failed decode and an `error` reply, never the connection.
Market data itself is not here: it leaves as the bytes NATS delivered (see `relay`).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from common.instruments import DEFAULT_SYMBOL

Channel = Literal["trades", "orderbook", "candles", "orders"]
CHANNELS: tuple[Channel, ...] = ("trades", "orderbook", "candles", "orders")
PRIVATE: frozenset[Channel] = frozenset({"orders"})  # need an `auth` message first
MAX_DEPTH = 50  # levels per side in an `md.book.<SYMBOL>` message
MAX_SYMBOLS = 64  # in one request: a bound on the work one frame can ask for

Depth = Annotated[int, msgspec.Meta(ge=1, le=MAX_DEPTH)]
Channels = Annotated[list[Channel], msgspec.Meta(min_length=1, max_length=len(CHANNELS))]
Symbols = Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]],
                    msgspec.Meta(min_length=1, max_length=MAX_SYMBOLS)]


def _default_symbols() -> list[str]:
    return [DEFAULT_SYMBOL]


class Ping(msgspec.Struct, tag="ping", tag_field="type"):
    """Application-level liveness check, answered with `pong` (the original clients' ping)."""


class Subscribe(msgspec.Struct, tag="subscribe", tag_field="type", kw_only=True):
    """Add feeds: a snapshot of each, then its live updates.

    A feed already subscribed is left as it is (to change a book's depth, unsubscribe
    first): a second snapshot would repeat trades the client has.
    """

    channels: Channels
    symbols: Symbols = msgspec.field(default_factory=_default_symbols)
    depth: Depth = MAX_DEPTH


class Unsubscribe(msgspec.Struct, tag="unsubscribe", tag_field="type", kw_only=True):
    """Stop feeds; nothing of them follows the `unsubscribed` answer."""

    channels: Channels
    symbols: Symbols = msgspec.field(default_factory=_default_symbols)


class Auth(msgspec.Struct, tag="auth", tag_field="type", kw_only=True):
    """Sign in with a key: `signature` is HMAC-SHA256 under its secret of timestamp +
    "GET" + "/ws/". Missing fields are left to the verifier, which names the problem."""

    key: str | None = None
    timestamp: str | int | None = None
    signature: str | None = None


Request = Ping | Subscribe | Unsubscribe | Auth


class Pong(msgspec.Struct, tag="pong", tag_field="type"):
    pass


class Subscribed(msgspec.Struct, tag="subscribed", tag_field="type"):
    channels: list[Channel]
    symbols: list[str]


class Unsubscribed(msgspec.Struct, tag="unsubscribed", tag_field="type"):
    channels: list[Channel]
    symbols: list[str]


class Authenticated(msgspec.Struct, tag="authenticated", tag_field="type"):
    """The `auth` message was accepted: the private channels are open to this user."""

    user_id: str
    role: str


class Error(msgspec.Struct, tag="error", tag_field="type", omit_defaults=True):
    message: str
    code: str | None = None  # the refusal's code, as the REST API would answer it


class BadRequest(Exception):
    """A frame the client should hear about in an `error` message (with `code`, if any)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


_decoder: msgspec.json.Decoder[Request] = msgspec.json.Decoder(Request)
encode = msgspec.json.Encoder().encode
PONG = encode(Pong())


def decode(frame: str | bytes) -> Request:
    """The request in a text or binary frame, or `BadRequest` saying what is wrong."""
    try:
        return _decoder.decode(frame)
    except msgspec.ValidationError as error:
        raise BadRequest(f"invalid message: {error}") from None
    except msgspec.DecodeError as error:
        raise BadRequest(f"malformed JSON: {error}") from None
    except RecursionError:  # msgspec's bound on nesting, whatever the fields
        raise BadRequest("malformed JSON: nested too deeply") from None


def error(message: str, code: str | None = None) -> bytes:
    return encode(Error(message, code))
