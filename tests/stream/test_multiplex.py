"""/ws/: many feeds on one connection, chosen with subscribe and unsubscribe."""

from nats.aio.client import Client as Nats
from redis.asyncio import Redis

from common import cache
from common.views import json_encoder
from tests.stream.conftest import Client
from tests.stream.market import book, cache_trades, publish_book, publish_trades, receive, trade


async def test_subscribe_snapshots_then_updates_and_unsubscribe_stops_them(
        stream: Client, nc: Nats, redis: Redis, symbols: list[str]) -> None:
    first, second = symbols[:2]
    await cache_trades(redis, first, [trade(first, 4, 1)])
    await redis.set(cache.book_key(second), json_encoder.encode(book(second, 8, 5, "snapshot")))
    ws = await stream.ws_connect("/ws/")

    await ws.send_json({"type": "subscribe", "channels": ["trades", "orderbook"],
                        "symbols": [first, second], "depth": 2})
    assert await receive(ws) == {"type": "subscribed", "channels": ["trades", "orderbook"],
                                 "symbols": [first, second]}
    snapshots = {(m["channel"], m["symbol"]): m for m in [await receive(ws) for _ in range(4)]}
    assert {m["type"] for m in snapshots.values()} == {"snapshot"}
    assert snapshots["trades", first]["seq"] == 4
    assert snapshots["trades", second]["trades"] == []
    assert len(snapshots["orderbook", second]["bids"]) == 2

    await publish_trades(nc, first, 5, [trade(first, 5, 2)])
    update = await receive(ws)
    assert (update["type"], update["channel"], update["symbol"], update["seq"]) == (
        "update", "trades", first, 5)

    await ws.send_json({"type": "unsubscribe", "channels": ["trades"], "symbols": [first]})
    assert (await receive(ws))["type"] == "unsubscribed"
    await publish_trades(nc, first, 6, [trade(first, 6, 3)])
    await publish_trades(nc, second, 1, [trade(second, 1, 1)])
    update = await receive(ws)
    assert (update["channel"], update["symbol"], update["seq"]) == ("trades", second, 1)

    await publish_book(nc, book(second, 9, 4))
    update = await receive(ws)
    assert (update["channel"], update["symbol"], len(update["asks"])) == ("orderbook", second, 2)


async def test_subscribing_twice_sends_no_second_snapshot(
        stream: Client, nc: Nats, symbols: list[str]) -> None:
    ws = await stream.ws_connect("/ws/")
    request = {"type": "subscribe", "channels": ["trades"], "symbols": [symbols[0]]}
    await ws.send_json(request)
    assert (await receive(ws))["type"] == "subscribed"
    assert (await receive(ws))["type"] == "snapshot"
    await ws.send_json(request)
    assert (await receive(ws))["type"] == "subscribed"
    await publish_trades(nc, symbols[0], 1, [trade(symbols[0], 1, 1)])
    assert (await receive(ws))["type"] == "update"


async def test_bad_subscriptions_answer_an_error_and_keep_the_connection(
        stream: Client, symbols: list[str]) -> None:
    ws = await stream.ws_connect("/ws/")
    for request in [
        {"type": "subscribe", "channels": ["trades"], "symbols": ["NOPE"]},
        {"type": "subscribe", "channels": ["klines"], "symbols": [symbols[0]]},
        {"type": "subscribe", "channels": [], "symbols": [symbols[0]]},
        {"type": "subscribe", "channels": ["orderbook"], "symbols": [symbols[0]], "depth": 0},
        {"type": "unsubscribe", "symbols": [symbols[0]]},
    ]:
        await ws.send_json(request)
        answer = await receive(ws)
        assert answer["type"] == "error", request
        assert answer["message"]
    await ws.send_json({"type": "ping"})
    assert await receive(ws) == {"type": "pong"}
