"""svc_trades' application: one cleanup context per resource, handlers in `api`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from common import keys, natsconn
from common.access import guard
from common.config import Settings
from common.cors import allow_page
from common.http import add_probes, add_routes, new_app
from common.instruments import load_instruments
from common.openapi import add_openapi
from common.shutdown import close_nats, close_pool
from common.tasks import stop_tasks
from svc_trades import accounts, api
from svc_trades.keys import KEYS_BUCKET, add_key_routes
from svc_trades.migrations import migrate
from svc_trades.openapi import OPERATIONS
from svc_trades.projector import Projector
from svc_trades.readmodel import OrderReadModel
from svc_trades.responder import Responder

PROJECTOR = web.AppKey("projector", Projector)


def create_app(settings: Settings) -> web.Application:
    app = new_app(settings.max_body_bytes)
    allow_page(app, settings)  # the exchange page, served by svc_stream
    instruments = app[api.INSTRUMENTS] = load_instruments(settings.instruments_file)
    app[accounts.TRANSFER_TIMEOUT] = settings.query_timeout

    async def postgres_ctx(app: web.Application) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(settings.pg_dsn, min_size=2, max_size=10,
                                         command_timeout=10.0)
        try:
            await migrate(pool)
            app[api.POOL] = pool
            app[api.READ_MODEL] = OrderReadModel(pool, instruments)
            yield
        finally:
            await close_pool(pool)

    async def nats_ctx(app: web.Application) -> AsyncIterator[None]:
        app[api.NATS] = await natsconn.connect(settings, "svc_trades")
        yield
        await close_nats(app[api.NATS])

    async def responder_ctx(app: web.Application) -> AsyncIterator[None]:
        """svc_orders' questions about orders, answered for as long as svc_trades is up."""
        responder = Responder(app[api.NATS], app[api.READ_MODEL])
        await responder.start()
        yield
        await responder.close()

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        app[api.REDIS] = Redis.from_url(settings.redis_url, socket_timeout=1.0,
                                        socket_connect_timeout=1.0)
        yield
        await app[api.REDIS].aclose()

    async def projector_ctx(app: web.Application) -> AsyncIterator[None]:
        projector = Projector(app[api.POOL], app[api.NATS], instruments,
                              batch=settings.projection_batch)
        app[PROJECTOR] = projector
        task = asyncio.get_running_loop().create_task(projector.run(), name="projector")
        yield
        await stop_tasks([task])

    async def keys_ctx(app: web.Application) -> AsyncIterator[None]:
        """The keys bucket the admin key routes write."""
        app[KEYS_BUCKET] = await keys.owned_bucket(app[api.NATS].jetstream(),
                                                     settings.nats_replicas)
        yield

    app.cleanup_ctx.extend([postgres_ctx, nats_ctx, responder_ctx, redis_ctx, projector_ctx])
    add_routes(app, [
        ("GET", "/trades/", api.list_trades),
        ("GET", "/trades/public/", api.public_trades),
        ("GET", "/trades/{trade_id}/", api.get_trade),
        ("POST", "/trades/{trade_id}/settle/", api.settle_trade),
        ("GET", "/orderbook/", api.orderbook),
        ("GET", "/candles/", api.list_candles),
        ("GET", "/orders/", api.list_orders),
        *accounts.ROUTES,
    ])

    if settings.auth == "on":
        assert settings.secret_key is not None, "check_protected_mode refuses to start without"
        app.cleanup_ctx.append(keys_ctx)
        add_key_routes(app, keys.SecretBox(settings.secret_key))
    guard(app, settings, api.NATS, public=("/orderbook/", "/trades/public/", "/candles/"))

    def ready() -> bool:
        """PostgreSQL and NATS answered the projector within the last second or so."""
        projector, nc = app.get(PROJECTOR), app.get(api.NATS)
        return bool(projector and projector.running and nc and nc.is_connected)

    add_probes(app, ready, settings)
    add_openapi(app, "exchange-core svc_trades", OPERATIONS, settings)
    return app
