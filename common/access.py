"""Who may call what: authentication, roles and rate limits for a service's routes.

With `EX_AUTH=on`, every request to a route that is not public must be signed
(`common.signing`); the request then carries the caller's `Identity`, the route's role
rule is enforced (403 PERMISSION_DENIED), and the key's rate limit is counted. Public
routes (and the OpenAPI document), and requests that carry no credentials at all, are
counted per client address.
Failed authentications (a bad key, signature or timestamp, a replay) are counted per
address too, with a stricter limit: once it is spent, that address gets 429 without its
signatures being looked at. Every answer, handled or refused, carries the RateLimit-*
headers of the limit it counted against. A refused request never reaches its handler.

With `EX_AUTH=off`, the original system's behaviour: nothing is checked, counted or
added, and no request carries an Identity.

Role rule: a handler marked `@requires("admin")` (or another role) needs at least that
role; an unmarked one needs `viewer` to read (GET, HEAD) and `trader` for anything else.
Roles rank viewer < trader < admin.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Collection
from typing import TypeVar

from aiohttp import web
from multidict import istr
from nats.aio.client import Client as Nats

from common.config import Settings
from common.http import EDGE, UNROUTED, Admit, ApiError, Handler, Route, error_response
from common.keyring import Keyring
from common.keys import ROLES, Identity, Role, SecretBox
from common.ratelimit import Limiter, Quota
from common.signing import Verifier
from common.views import TradeView, seen_by

IDENTITY = web.RequestKey("identity", Identity)
QUOTA = web.RequestKey("quota", Quota)
# `common.http.add_probes`' routes: open to all and never counted, so that health checks
# and metric scrapes cannot be locked out by the public limit.
PROBES = frozenset({"/health/", "/ready/", "/metrics"})
DOCUMENT = "/openapi.json"  # the service's OpenAPI document: public

ACCESS_KEY = "EX-ACCESS-KEY"
ACCESS_TIMESTAMP = "EX-ACCESS-TIMESTAMP"
ACCESS_SIGN = "EX-ACCESS-SIGN"
# The same as case-insensitive strings, as aiohttp's own header names are, whose folded
# form is made once: each signed request looks all three up.
_KEY, _TIMESTAMP, _SIGN = (istr(name) for name in (ACCESS_KEY, ACCESS_TIMESTAMP, ACCESS_SIGN))
_READS = frozenset({"GET", "HEAD"})
_REQUIRED_ROLE = "__required_role__"

H = TypeVar("H", bound=Handler)


def requires(role: Role) -> Callable[[H], H]:
    """Mark a handler as needing at least `role` (see the module's role rule)."""
    def mark(handler: H) -> H:
        setattr(handler, _REQUIRED_ROLE, role)
        return handler
    return mark


def default_role(method: str) -> Role:
    """The least role of a handler not marked with `requires`."""
    return "viewer" if method in _READS else "trader"


def needed_role(method: str, handler: Handler) -> Role:
    """The least role a request needs (see the module's role rule)."""
    role: Role | None = getattr(handler, _REQUIRED_ROLE, None)
    return role or default_role(method)


def identity(request: web.Request) -> Identity | None:
    """The caller's identity; None with auth off and on public routes."""
    return request.get(IDENTITY)


def guard(app: web.Application, settings: Settings, nats: web.AppKey[Nats],
          public: Collection[str]) -> None:
    """A service's whole access control, nothing with auth off: `protect` in front of its
    routes, and a cleanup context, run after the one that sets `app[nats]`, that follows
    the keys bucket (the service starts once the keys are loaded) and closes the
    limiter's Redis pool at the end."""
    if settings.auth == "off":
        return
    assert settings.secret_key is not None, "check_protected_mode refuses to start without"
    keyring = Keyring(SecretBox(settings.secret_key))
    limiter = Limiter(settings)
    protect(app, settings, Verifier(keyring, settings.auth_window), limiter, public)

    async def access_ctx(app: web.Application) -> AsyncIterator[None]:
        try:
            async with keyring.watching(app[nats], settings.nats_replicas):
                yield
        finally:
            await limiter.close()

    app.cleanup_ctx.append(access_ctx)


def is_admin(caller: Identity | None) -> bool:
    """Whether `caller` may see and act for every user: an admin key, or auth off."""
    return caller is None or caller.role == "admin"


def owner_filter(caller: Identity | None, user_id: str | None) -> str | None:
    """The user filter a listing must apply: the caller's own for any key but an admin's
    (asking for another user's rows is 403), the asked one otherwise."""
    if is_admin(caller):
        return user_id
    assert caller is not None
    if user_id is not None and user_id != caller.user_id:
        raise permission_denied("a key lists only its own user's rows")
    return caller.user_id


def trades_seen_by(caller: Identity | None, trades: list[TradeView]) -> list[TradeView]:
    """`trades` as `caller` may see them: whole for an admin (or with auth off); for any
    other key, each names the caller's own side only (`common.views.seen_by`)."""
    if is_admin(caller):
        return trades
    assert caller is not None
    return [seen_by(trade, caller.user_id) for trade in trades]


def permission_denied(message: str) -> ApiError:
    return ApiError(403, "PERMISSION_DENIED", message)


def protect(app: web.Application, settings: Settings, verifier: Verifier, limiter: Limiter,
            public: Collection[str]) -> None:
    """Put access control in front of every route of `app` but the probes and those whose
    path (as registered, e.g. "/orderbook/") is in `public`; nothing with auth off."""
    if settings.auth == "off":
        return
    edge = app[EDGE]
    edge.admission = Admission(verifier, limiter, public).admit
    edge.finishers.append(_add_quota_headers)


class Admission:
    """The access check of each route, by the route's kind: a probe's is none, a public
    route's counts the address, any other's checks the signature, the role and the key's
    limit."""

    def __init__(self, verifier: Verifier, limiter: Limiter,
                 public: Collection[str]) -> None:
        self._verifier, self._limiter = verifier, limiter
        self._public = frozenset(path.rstrip("/") for path in (*public, DOCUMENT, UNROUTED))
        self._probes = frozenset(path.rstrip("/") for path in PROBES)

    def admit(self, route: Route) -> Admit | None:
        path = route.path.rstrip("/")
        if path in self._probes:
            return None
        if path in self._public:
            return self._admit_public
        return functools.partial(self._admit_key, needed=needed_role(route.method,
                                                                      route.handler))

    async def _admit_public(self, request: web.Request) -> web.StreamResponse | None:
        quota = request[QUOTA] = self._limiter.hit_address(request.remote or "unknown")
        return None if quota.allowed else _rate_limited("too many requests")

    async def _admit_key(self, request: web.Request, needed: Role) -> web.StreamResponse | None:
        limiter = self._limiter
        address = request.remote or "unknown"
        failures = limiter.auth_failures_left(address)
        if not failures.allowed:
            request[QUOTA] = failures
            return _rate_limited("too many failed authentications from this address")
        headers = request.headers
        try:
            try:
                body = await request.read()  # kept by aiohttp for the handler
            except web.HTTPRequestEntityTooLarge:
                raise ApiError(413, "BODY_TOO_LARGE", "request body is too large") from None
            caller = self._verifier.verify(headers.get(_KEY), headers.get(_TIMESTAMP),
                                           headers.get(_SIGN), request.method,
                                           request.raw_path, body)
        except ApiError as error:
            if error.status != 401 or error.code == "AUTH_REQUIRED":
                # No credentials, or a body too large to read: counted as public traffic.
                quota = request[QUOTA] = limiter.hit_address(address)
                if not quota.allowed:
                    return _rate_limited("too many requests")
            else:
                request[QUOTA] = limiter.hit_auth_failure(address)
            return error_response(error)
        request[IDENTITY] = caller
        quota = request[QUOTA] = limiter.hit_key(caller.key_id)
        if ROLES.index(caller.role) < ROLES.index(needed):
            return error_response(permission_denied(f"this needs a key with the {needed} role"))
        return None if quota.allowed else _rate_limited("too many requests")


def _rate_limited(message: str) -> web.Response:
    """429; its Retry-After comes with the quota's headers."""
    return error_response(ApiError(429, "RATE_LIMITED", message))


def _add_quota_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    quota = request.get(QUOTA)
    if quota is not None:
        quota.add_headers(response.headers)
