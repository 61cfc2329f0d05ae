"""svc_trades answers the order read model's questions over NATS (`common.queries`), and
svc_stream's question for a candles snapshot.

One subscription per subject, in the queue group `subjects.QUERY_QUEUE`: with several
svc_trades instances each request is answered once, by any of them (a projection
standby reads as well as the leader). Each request is answered in a task of its own, so
a slow listing holds up no lookup behind it, and every request gets a reply: a failure
is a `QueryFailed`, which svc_orders answers 503 with instead of waiting out its timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import nats.errors
import structlog
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from common import subjects
from common.http import ApiError
from common.messages import encoder
from common.queries import (
    CandlesFound,
    FoundOrder,
    OrderPage,
    QueryFailed,
    Reply,
    get_order_decoder,
    list_orders_decoder,
    recent_candles_decoder,
)
from common.tasks import stop_tasks
from svc_trades import candles
from svc_trades.readmodel import OrderReadModel

log = structlog.get_logger(__name__)

Answer = Callable[[bytes], Awaitable[Reply]]

CATCH_UP = 1.0  # seconds a candles question waits for the projection to reach its seq
CATCH_UP_POLL = 0.02


class Responder:
    def __init__(self, nc: Nats, model: OrderReadModel) -> None:
        self.nc, self.model = nc, model
        self._subscriptions: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        for subject, answer in ((subjects.ORDER_QUERY, self._order),
                                (subjects.ORDERS_QUERY, self._orders),
                                (subjects.CANDLES_QUERY, self._candles)):
            self._subscriptions.append(await self.nc.subscribe(
                subject, queue=subjects.QUERY_QUEUE, cb=self._spawner(answer)))

    async def close(self) -> None:
        for subscription in self._subscriptions:
            try:
                await subscription.unsubscribe()
            except nats.errors.Error as error:  # NATS gone: nothing left to answer
                log.warning("read model subscription not closed", error=repr(error))
        await stop_tasks(self._tasks)

    async def _order(self, data: bytes) -> Reply:
        return FoundOrder(order=await self.model.get(get_order_decoder.decode(data).order_id))

    async def _orders(self, data: bytes) -> Reply:
        query = list_orders_decoder.decode(data)
        return OrderPage(body=await self.model.listing(query.filters, query.page))

    async def _candles(self, data: bytes) -> Reply:
        """The latest one-minute candles, once they count the asked seq (or after
        CATCH_UP: the asker sees from `as_of_seq` how far they got)."""
        question = recent_candles_decoder.decode(data)
        query = candles.CandleQuery(symbol=question.symbol, interval="1m", since=None,
                                    until=None, limit=question.limit)
        deadline = time.monotonic() + CATCH_UP
        while True:
            found = await candles.read(self.model.pool, query, datetime.now(UTC),
                                       self.model.instruments)
            if found.as_of_seq >= question.seq or time.monotonic() >= deadline:
                return CandlesFound(candles=found)
            await asyncio.sleep(CATCH_UP_POLL)

    def _spawner(self, answer: Answer) -> Callable[[Msg], Awaitable[None]]:
        async def spawn(msg: Msg) -> None:
            task = asyncio.create_task(self._reply(msg, answer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return spawn

    async def _reply(self, msg: Msg, answer: Answer) -> None:
        try:
            reply = await answer(msg.data)
        except ApiError as error:
            reply = QueryFailed(message=error.message,
                                reason=str(error.details.get("reason", error.code)))
        except Exception as error:
            log.exception("read model query failed", subject=msg.subject)
            reply = QueryFailed(message="the read model failed", reason=type(error).__name__)
        try:
            await msg.respond(encoder.encode(reply))
        except nats.errors.Error as error:  # the asker has its timeout
            log.warning("read model reply not sent", error=repr(error))
