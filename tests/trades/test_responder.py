"""svc_trades answers the read model's questions over NATS once per request, however
many instances run, and answers a failure rather than nothing."""

import asyncio

import asyncpg
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg

from common import subjects
from common.messages import encoder
from common.queries import FoundOrder, GetOrder, QueryFailed, reply_decoder
from svc_trades.readmodel import OrderReadModel
from svc_trades.responder import Responder
from tests.helpers import eventually
from tests.trades.journal import INSTRUMENTS

REQUESTS = 20


async def test_two_instances_answer_each_request_once(pool: asyncpg.Pool, nc: Nats) -> None:
    responders = [Responder(nc, OrderReadModel(pool, INSTRUMENTS)) for _ in range(2)]
    for responder in responders:
        await responder.start()
    replies: list[Msg] = []

    async def collect(msg: Msg) -> None:
        replies.append(msg)
    inbox = nc.new_inbox()
    await nc.subscribe(inbox, cb=collect)
    request = encoder.encode(GetOrder(order_id="00000000-0000-4000-8000-0000000000ff"))
    try:
        for _ in range(REQUESTS):
            await nc.publish(subjects.ORDER_QUERY, request, reply=inbox)
        await eventually(lambda: len(replies) >= REQUESTS)
        await asyncio.sleep(0.3)  # room for any second answer to arrive
        assert len(replies) == REQUESTS
        assert {reply_decoder.decode(msg.data) for msg in replies} == {FoundOrder(order=None)}
    finally:
        for responder in responders:
            await responder.close()


async def test_a_malformed_request_is_answered_with_a_failure(pool: asyncpg.Pool,
                                                              nc: Nats) -> None:
    responder = Responder(nc, OrderReadModel(pool, INSTRUMENTS))
    await responder.start()
    try:
        reply = reply_decoder.decode((await nc.request(subjects.ORDERS_QUERY, b"\xc1",
                                                       timeout=5)).data)
        assert isinstance(reply, QueryFailed)
    finally:
        await responder.close()
