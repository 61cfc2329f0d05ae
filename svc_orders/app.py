"""svc_orders' application: one cleanup context per resource, handlers in `api`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog
from aiohttp import web
from nats.aio.client import Client as Nats
from redis.asyncio import Redis

from common import natsconn, subjects
from common.access import guard
from common.config import Settings
from common.cors import allow_page
from common.http import add_probes, add_routes, new_app
from common.instruments import load_instruments
from common.journal import ensure_stream
from common.openapi import add_openapi
from common.orderstate import OrderState
from common.shutdown import close_nats
from common.tasks import stop_tasks, supervise
from svc_orders import api, snapshots
from svc_orders.journaling import Journal
from svc_orders.leadership import Leadership, Lease
from svc_orders.marketdata import MarketData
from svc_orders.openapi import OPERATIONS
from svc_orders.readmodel import READ_MODEL, ReadModel, list_orders
from svc_orders.sequencer import Sequencer
from svc_orders.sessions import expire_at_session_close

log = structlog.get_logger(__name__)

NATS = web.AppKey("nats", Nats)
LEADERSHIP = web.AppKey("leadership", Leadership)
MARKET = web.AppKey("market", MarketData)
REDIS = web.AppKey("redis", Redis)


def create_app(settings: Settings) -> web.Application:
    app = new_app(settings.max_body_bytes)
    allow_page(app, settings)  # the exchange page, served by svc_stream
    app[api.INSTRUMENTS] = load_instruments(settings.instruments_file)

    async def nats_ctx(app: web.Application) -> AsyncIterator[None]:
        # Every subject is built from a configured symbol (common.subjects): nats-py's
        # per-publish regex checks would only cost time on the hot path.
        async def disconnected() -> None:
            if MARKET in app:
                app[MARKET].disconnected()

        async def reconnected() -> None:
            if MARKET in app:
                await app[MARKET].reconnected()

        app[NATS] = await natsconn.connect(settings, "svc_orders",
                                           skip_subject_validation=True,
                                           disconnected_cb=disconnected,
                                           reconnected_cb=reconnected)
        yield
        await close_nats(app[NATS])

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        app[REDIS] = Redis.from_url(settings.redis_url, socket_timeout=1.0,
                                    socket_connect_timeout=1.0)
        yield
        await app[REDIS].aclose()

    async def history_ctx(app: web.Application) -> AsyncIterator[None]:
        """Finished orders and listings, asked of svc_trades: it being down costs only
        those answers (503), never order entry."""
        app[READ_MODEL] = ReadModel(app[NATS], settings.query_timeout)
        yield

    async def sequencer_ctx(app: web.Application) -> AsyncIterator[None]:
        js = app[NATS].jetstream()
        await ensure_stream(js, settings.nats_replicas)
        journal = Journal(app[NATS], settings.journal_timeout)
        await journal.start()
        sequencer = Sequencer(js, journal,
                              await snapshots.bucket(js, settings.nats_replicas),
                              app[api.INSTRUMENTS], snapshot_every=settings.snapshot_every,
                              funding=settings.funding == "on")
        lease = Lease(js, settings.orders_url or
                      f"http://{settings.host}:{settings.orders_port}",
                      settings.lease_ttl, settings.nats_replicas)
        leader = app[LEADERSHIP] = Leadership(app[NATS], app[REDIS], lease, sequencer)  # a standby
        await sequencer.recover_retrying()
        app[api.SEQUENCER] = sequencer
        app[api.FIND_ORDER] = _find_order(sequencer, app[READ_MODEL])
        market = app[MARKET] = MarketData(
            app[NATS], app[REDIS], app[api.INSTRUMENTS], lambda: sequencer.engine,
            sequencer.acknowledged, settings.book_interval, settings.book_heartbeat,
            find_order=(lambda order_id: sequencer.store.get(order_id))
            if settings.auth == "on" else None)
        sequencer.find = app[api.FIND_ORDER]  # repeats and refusals answer with the order
        sequencer.on_journaled = market.journaled

        async def transfers() -> None:
            """Deposits and withdrawals svc_trades took: the leader journals them."""
            subscription = await app[NATS].subscribe(
                subjects.TRANSFER_REQUEST, queue=subjects.TRANSFER_QUEUE,
                cb=api.transfer_responder(sequencer, app[api.INSTRUMENTS]))
            try:
                await asyncio.Future()  # until the leader steps down or stops
            finally:
                await subscription.unsubscribe()

        jobs = {"marketdata": market.run, "transfers": transfers}  # the leader's alone
        if any(instrument.session_close for instrument in app[api.INSTRUMENTS].values()):
            jobs["session_close"] = lambda: expire_at_session_close(sequencer,
                                                                    app[api.INSTRUMENTS])
        await leader.begin()
        task = asyncio.create_task(supervise("leadership", lambda: leader.run(jobs)))
        yield
        await stop_tasks([task])
        await sequencer.stop()
        await journal.close()

    app.cleanup_ctx.extend([nats_ctx, redis_ctx, history_ctx, sequencer_ctx])
    guard(app, settings, NATS, public=())
    add_routes(app, [
        ("POST", "/orders/", api.place_order),
        ("GET", "/orders/{order_id}/", api.get_order),
        ("PUT", "/orders/{order_id}/", api.modify_order),
        ("PATCH", "/orders/{order_id}/", api.modify_order),
        ("DELETE", "/orders/{order_id}/", api.cancel_order),
        ("GET", "/orders/", list_orders),
        ("POST", "/accounts/{user_id}/deposits/", api.deposit),
        ("POST", "/accounts/{user_id}/withdrawals/", api.withdraw),
    ])

    def ready() -> bool:
        sequencer = app.get(api.SEQUENCER)
        nc = app.get(NATS)
        return bool(sequencer and sequencer.ready and sequencer.leading()
                    and nc and nc.is_connected)

    add_probes(app, ready, settings)
    add_openapi(app, "exchange-core svc_orders", OPERATIONS, settings)
    return app


def _find_order(sequencer: Sequencer, history: ReadModel) -> api.FindOrder:
    """Live and recent orders from memory, older ones from svc_trades' read model."""
    async def find(order_id: str) -> OrderState | None:
        return await sequencer.remembered(order_id) or await history.get(order_id)
    return find
