"""Settlement: atomic, once, announced on `ex.settlements.<SYMBOL>`."""

import asyncio
from typing import Any

from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from common.messages import settlement_decoder
from common.views import timestamp
from tests.helpers import AppClient, eventually
from tests.trades.journal import market, publish

Json = dict[str, Any]


async def projected_trades(trades: AppClient, js: JetStreamContext) -> list[Json]:
    await publish(js, market())

    async def listed() -> list[Json]:
        body = await (await trades.get("/trades/", params={"page_size": 100})).json()
        return body["trades"] if body["pagination"]["total_count"] == 29 else []
    return await eventually(listed, timeout=10.0)


async def test_settling_twice_answers_409_and_changes_nothing(
        trades: AppClient, js: JetStreamContext, nc: Nats) -> None:
    announced: list[Msg] = []

    async def keep(msg: Msg) -> None:
        announced.append(msg)
    await nc.subscribe("ex.settlements.>", cb=keep)
    await nc.flush()  # subscribed at the server before svc_trades, on its own link, publishes
    listed = await projected_trades(trades, js)
    trade = next(t for t in listed if t["symbol"] == "ALT")

    response = await trades.post(f"/trades/{trade['trade_id']}/settle/")
    assert response.status == 200
    body = await response.json()
    settled = body["trade"]
    assert trade["trade_id"] in body["message"]
    assert settled["is_settled"] is True
    assert settled["settlement_timestamp"] >= trade["execution_timestamp"]
    assert settled | {"is_settled": False, "settlement_timestamp": None} == trade
    assert await (await trades.get(f"/trades/{trade['trade_id']}/")).json() == settled

    again = await trades.post(f"/trades/{trade['trade_id']}/settle")
    assert again.status == 409
    assert (await again.json())["error"]["code"] == "TRADE_ALREADY_SETTLED"
    assert await (await trades.get(f"/trades/{trade['trade_id']}/")).json() == settled

    only = await (await trades.get("/trades/", params={"settled": "true"})).json()
    assert only["trades"] == [settled]
    rest = await (await trades.get("/trades/", params={"settled": "false",
                                                       "page_size": 100})).json()
    assert len(rest["trades"]) == 28

    await eventually(lambda: announced)
    [msg] = announced
    assert msg.subject == "ex.settlements.ALT"
    event = settlement_decoder.decode(msg.data)
    assert (event.trade_id, event.symbol) == (trade["trade_id"], "ALT")
    assert timestamp(event.settlement_timestamp) == settled["settlement_timestamp"]


async def test_concurrent_settles_of_one_trade_have_one_winner(
        trades: AppClient, js: JetStreamContext) -> None:
    listed = await projected_trades(trades, js)
    for trade in listed[:8]:
        path = f"/trades/{trade['trade_id']}/settle/"
        responses = await asyncio.gather(*(trades.post(path) for _ in range(4)))
        assert sorted(r.status for r in responses) == [200, 409, 409, 409]
    body = await (await trades.get("/trades/", params={"settled": "true"})).json()
    assert body["pagination"]["total_count"] == 8
