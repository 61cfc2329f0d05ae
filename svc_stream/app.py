"""svc_stream's application: one cleanup context per resource, endpoints in `endpoints`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial

from aiohttp import WSCloseCode, web
from nats.aio.client import Client as Nats
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from common import natsconn
from common.access import protect
from common.config import Settings, check_protected_mode
from common.http import Handler, add_probes, add_routes, new_app
from common.instruments import load_instruments
from common.keyring import Keyring
from common.keys import SecretBox
from common.ratelimit import Limiter
from common.shutdown import close_nats
from common.signing import Verifier
from common.tasks import stop_tasks, supervise
from svc_stream import candles, endpoints, memory
from svc_stream.candles import CandleSource
from svc_stream.client import Flusher
from svc_stream.market_cache import MarketCache
from svc_stream.page import add_page
from svc_stream.private import Gate
from svc_stream.relay import Relay

NATS = web.AppKey("nats", Nats)
REDIS = web.AppKey("redis", Redis)

REDIS_TIMEOUT = 0.5  # seconds: a snapshot waits this long for Redis before going empty


def create_app(settings: Settings) -> web.Application:
    app = new_app(settings.max_body_bytes, streams=True)
    app[endpoints.SETTINGS] = settings
    app[endpoints.SYMBOLS] = frozenset(load_instruments(settings.instruments_file))
    app[endpoints.SESSIONS] = set()
    app[endpoints.CAPACITY] = endpoints.Capacity(settings.ws_max_clients)
    app[endpoints.FLUSHER] = Flusher()

    async def nats_ctx(app: web.Application) -> AsyncIterator[None]:
        async def reconnected() -> None:
            relay = app.get(endpoints.RELAY)
            if relay is not None:
                await relay.catch_up(app[endpoints.MARKET_CACHE])
                await candles.catch_up(relay.candles, app[endpoints.CANDLE_SOURCE])

        app[NATS] = await natsconn.connect(settings, "svc_stream", reconnected_cb=reconnected)
        yield
        await close_nats(app[NATS])

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        # No retries: redis-py's default backs off for seconds, and a snapshot should go
        # out empty after REDIS_TIMEOUT, not hold its feed's buffer that long.
        app[REDIS] = Redis.from_url(settings.redis_url, socket_timeout=REDIS_TIMEOUT,
                                    socket_connect_timeout=REDIS_TIMEOUT,
                                    retry=Retry(NoBackoff(), 0))
        app[endpoints.MARKET_CACHE] = MarketCache(app[REDIS], public=settings.auth == "on")
        app[endpoints.CANDLE_SOURCE] = CandleSource(app[NATS], app[endpoints.MARKET_CACHE],
                                                    settings.query_timeout)
        yield
        await app[REDIS].aclose()

    async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
        relay = Relay(app[NATS], auth=settings.auth == "on")
        await relay.start()
        app[endpoints.RELAY] = relay
        yield
        await relay.stop()

    async def memory_ctx(app: web.Application) -> AsyncIterator[None]:
        trim = memory.malloc_trim()
        tasks = [] if trim is None else [asyncio.get_running_loop().create_task(supervise(
            "memory", partial(memory.trim_after_departures, app[endpoints.CAPACITY], trim)))]
        yield
        await stop_tasks(tasks)

    app.cleanup_ctx.extend([nats_ctx, redis_ctx, relay_ctx, memory_ctx])
    app.on_shutdown.append(_close_clients)
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/ws/trades/", endpoints.trades),
        ("GET", "/ws/orderbook/", endpoints.orderbook),
        ("GET", "/ws/", endpoints.multiplex),
    ]
    add_routes(app, routes)
    page = add_page(app, settings, app[endpoints.SYMBOLS])
    if settings.auth == "on":
        _add_gate(app, settings, public=[path for _, path, _ in routes] + page)

    def ready() -> bool:
        relay = app.get(endpoints.RELAY)
        return relay is not None and relay.ready

    add_probes(app, ready, settings)
    return app


async def _close_clients(app: web.Application) -> None:
    """Shutdown: tell every client we are going away, before handlers are cancelled."""
    clients = [session.client for session in app[endpoints.SESSIONS]]
    for client in clients:
        client.close(WSCloseCode.GOING_AWAY, "server shutting down")
    await asyncio.gather(*(client.stop() for client in clients))


def _add_gate(app: web.Application, settings: Settings, public: list[str]) -> None:
    """Auth on: every route is public (counted per client address); the private channel
    opens with an `auth` message, checked against the keys the keyring follows."""
    check_protected_mode(settings)
    assert settings.secret_key is not None, "checked just above"
    keyring = Keyring(SecretBox(settings.secret_key))
    verifier = Verifier(keyring, settings.auth_window)
    limiter = Limiter(settings)
    gate = app[endpoints.GATE] = Gate(keyring, verifier, limiter)
    protect(app, settings, verifier, limiter, public=public)

    async def keys_ctx(app: web.Application) -> AsyncIterator[None]:
        sessions = app[endpoints.SESSIONS]
        async with keyring.watching(app[NATS], settings.nats_replicas):
            task = asyncio.get_running_loop().create_task(supervise(
                "revocations", lambda: gate.watch(sessions)))
            yield
            await stop_tasks([task])
        await limiter.close()

    async def interest_ctx(app: web.Application) -> AsyncIterator[None]:
        relay = app[endpoints.RELAY]
        task = asyncio.get_running_loop().create_task(supervise(
            "interest", relay.announce_interest))
        yield
        await stop_tasks([task])

    app.cleanup_ctx.insert(1, keys_ctx)  # after NATS, before the relay takes clients
    app.cleanup_ctx.append(interest_ctx)  # after the relay
