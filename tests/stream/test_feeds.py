"""/ws/trades/ and /ws/orderbook/: a snapshot from Redis, then NATS, no gap, no repeat."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
import nats
import pytest
from aiohttp import ClientWebSocketResponse
from nats.aio.client import Client as Nats
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from common import cache, subjects
from common.views import json_encoder
from ops.stack import NatsServer
from tests.helpers import eventually
from tests.stream.conftest import Client, MakeStream
from tests.stream.market import (
    book,
    cache_trades,
    publish_book,
    publish_trades,
    receive,
    trade,
    trade_command,
)

OUTAGE_TIMEOUT = 15.0  # seconds: nats-py retries every 2 s, then svc_stream catches up


@contextlib.asynccontextmanager
async def nats_connection(server: NatsServer) -> AsyncIterator[Nats]:
    connection = await nats.connect(server.url)
    try:
        yield connection
    finally:
        await connection.close()


async def test_trades_snapshot_then_updates_past_it(stream: Client, nc: Nats, redis: Redis,
                                                    symbols: list[str]) -> None:
    symbol = symbols[0]
    await cache_trades(redis, symbol, [trade(symbol, seq, seq) for seq in range(1, 6)])
    ws = await stream.ws_connect(f"/ws/trades/?symbol={symbol}")

    snapshot = await receive(ws)
    assert (snapshot["type"], snapshot["channel"], snapshot["symbol"]) == (
        "snapshot", "trades", symbol)
    assert snapshot["seq"] == 5
    assert [t["trade_no"] for t in snapshot["trades"]] == [1, 2, 3, 4, 5]  # oldest first

    await publish_trades(nc, symbol, 5, [trade(symbol, 5, 5)])  # already in the snapshot
    await publish_trades(nc, symbol, 7, [trade(symbol, 7, 6), trade(symbol, 7, 7)])
    update = await receive(ws)
    assert (update["type"], update["seq"]) == ("update", 7)
    assert [t["trade_no"] for t in update["trades"]] == [6, 7]


async def test_connecting_while_trading_loses_and_repeats_nothing(
        stream: Client, nc: Nats, redis: Redis, symbols: list[str]) -> None:
    """Clients join at different points of a busy feed; each sees every trade once."""
    symbol, commands = symbols[0], 300
    clients: list[asyncio.Task[list[int]]] = []

    async def watch() -> list[int]:
        ws = await stream.ws_connect(f"/ws/trades/?symbol={symbol}")
        seen = [t["trade_no"] for t in (await receive(ws))["trades"]]
        while not seen or seen[-1] < commands:
            seen += [t["trade_no"] for t in (await receive(ws))["trades"]]
        await ws.close()
        return seen

    for seq in range(1, commands + 1):
        await trade_command(nc, redis, symbol, seq, [trade(symbol, seq, seq)])
        if seq % 50 == 0:
            clients.append(asyncio.create_task(watch()))
            await asyncio.sleep(0)  # let it start connecting amid the flow
    clients.append(asyncio.create_task(watch()))

    for seen in await asyncio.gather(*clients):
        assert seen == list(range(seen[0], commands + 1))
        assert len(seen) >= cache.RECENT_TRADES  # a full snapshot, or joined early


async def test_orderbook_snapshot_cut_to_depth_then_updates(
        stream: Client, nc: Nats, redis: Redis, symbols: list[str]) -> None:
    symbol = symbols[0]
    await redis.set(cache.book_key(symbol), json_encoder.encode(book(symbol, 10, 80, "snapshot")))
    deep = await stream.ws_connect(f"/ws/orderbook/?symbol={symbol}")
    shallow = await stream.ws_connect(f"/ws/orderbook/?symbol={symbol}&depth=3")

    snapshot = await receive(deep)
    assert (snapshot["type"], snapshot["channel"], snapshot["seq"]) == ("snapshot", "orderbook", 10)
    assert (len(snapshot["bids"]), len(snapshot["asks"])) == (50, 50)
    snapshot = await receive(shallow)
    assert [level["price"] for level in snapshot["bids"]] == ["100.00", "99.00", "98.00"]
    assert [level["price"] for level in snapshot["asks"]] == ["101.00", "102.00", "103.00"]

    await publish_book(nc, book(symbol, 9, 50))  # older than the snapshot: never shown
    await publish_book(nc, book(symbol, 10, 50))  # a heartbeat of the same book: shown
    for ws, depth in [(deep, 50), (shallow, 3)]:
        heartbeat = await receive(ws)
        assert (heartbeat["type"], heartbeat["seq"], len(heartbeat["bids"])) == (
            "update", 10, depth)
    await publish_book(nc, book(symbol, 11, 2))
    for ws in (deep, shallow):
        update = await receive(ws)
        assert (update["seq"], len(update["bids"]), len(update["asks"])) == (11, 2, 2)


async def test_original_clients_read_trades_and_bids_asks(
        stream: Client, nc: Nats, redis: Redis) -> None:
    """The original system's clients: no query string, message["trades"] and ["bids"]."""
    await cache_trades(redis, "DEFAULT", [trade("DEFAULT", 1, 1)])
    trades = await stream.ws_connect("/ws/trades/")
    orderbook = await stream.ws_connect("/ws/orderbook")  # no trailing slash works too

    for message in [await receive(trades), await receive(orderbook)]:
        assert message["symbol"] == "DEFAULT"
    await publish_trades(nc, "DEFAULT", 2**40, [trade("DEFAULT", 2**40, 2**40, "150.25")])
    await publish_book(nc, book("DEFAULT", 2**40, 2))
    message = await receive(trades)
    assert message["trades"][0]["price"] == "150.25"
    assert {"trade_id", "price", "quantity", "execution_timestamp", "bid_order_id",
            "ask_order_id"} <= message["trades"][0].keys()
    message = await receive(orderbook)
    assert (message["bids"][0]["price"], message["bids"][0]["quantity"]) == ("100.00", 1)
    assert (message["asks"][0]["price"], message["asks"][0]["quantity"]) == ("101.00", 1)


async def test_redis_down_means_empty_snapshots_and_live_updates(
        make_stream: MakeStream, nc: Nats, symbols: list[str]) -> None:
    stream = await make_stream(redis_url="redis://127.0.0.1:1/0")
    symbol = symbols[0]
    trades = await stream.ws_connect(f"/ws/trades/?symbol={symbol}")
    orderbook = await stream.ws_connect(f"/ws/orderbook/?symbol={symbol}")
    assert await receive(trades) == {"type": "snapshot", "channel": "trades", "symbol": symbol,
                                     "seq": 0, "trades": []}
    empty = await receive(orderbook)
    assert (empty["seq"], empty["bids"], empty["asks"]) == (0, [], [])

    await publish_trades(nc, symbol, 3, [trade(symbol, 3, 1)])
    await publish_book(nc, book(symbol, 3, 1))
    assert (await receive(trades))["seq"] == 3
    assert (await receive(orderbook))["seq"] == 3


async def test_ready_only_with_nats_subscriptions(stream: Client) -> None:
    async def ready() -> bool:
        response = await stream.get("/ready/")
        return response.status == 200 and (await response.json())["ready"] is True
    await eventually(ready)
    assert (await stream.get("/health")).status == 200

    ws: ClientWebSocketResponse = await stream.ws_connect("/ws/")
    metrics = await (await stream.get("/metrics")).text()
    for name in ("stream_clients", "stream_messages_out_total",
                 "stream_book_updates_conflated_total", "stream_clients_dropped_total"):
        assert f"\n{name} " in metrics
    await ws.close()


async def test_messages_of_every_frame_size_arrive_intact(
        stream: Client, nc: Nats, symbols: list[str]) -> None:
    """Frames are built by the relay: short, 16-bit and 64-bit lengths (RFC 6455 5.2)."""
    symbol = symbols[0]
    ws = await stream.ws_connect(f"/ws/trades/?symbol={symbol}")
    await receive(ws)
    for seq, count in enumerate([1, 100, 500], start=1):
        trades = [trade(symbol, seq, 1000 * seq + i) for i in range(count)]
        await publish_trades(nc, symbol, seq, trades)
        message = await receive(ws)
        assert [t["trade_no"] for t in message["trades"]] == [t.trade_no for t in trades]
    await ws.send_str("x" * 200)  # and a client frame of 126+ bytes is read as usual
    assert (await receive(ws))["type"] == "error"


async def test_trades_missed_during_a_nats_outage_arrive_after_the_reconnect(
        make_stream: MakeStream, private_nats: NatsServer, redis: Redis,
        symbols: list[str]) -> None:
    """NATS drops what is published while svc_stream is cut off; svc_orders cached it in
    Redis first, so the client gets exactly the missed trades once NATS is back."""
    symbol = symbols[0]
    stream = await make_stream(nats_url=private_nats.url)
    ws = await stream.ws_connect(f"/ws/trades/?symbol={symbol}")
    assert (await receive(ws))["type"] == "snapshot"
    async with nats_connection(private_nats) as publisher:
        await trade_command(publisher, redis, symbol, 1, [trade(symbol, 1, 1)])
        assert [t["trade_no"] for t in (await receive(ws))["trades"]] == [1]

    private_nats.stop()
    await cache_trades(redis, symbol, [trade(symbol, 2, 2), trade(symbol, 4, 3)])
    private_nats.start()

    missed = await receive(ws, seconds=OUTAGE_TIMEOUT)
    assert (missed["type"], missed["seq"]) == ("update", 4)
    assert [t["trade_no"] for t in missed["trades"]] == [2, 3]
    async with nats_connection(private_nats) as publisher:
        await publish_trades(publisher, symbol, 4, [trade(symbol, 4, 3)])  # a late repeat
        await trade_command(publisher, redis, symbol, 5, [trade(symbol, 5, 4)])
        update = await receive(ws)
    assert (update["seq"], [t["trade_no"] for t in update["trades"]]) == (5, [4])


@pytest.mark.parametrize("forged", [
    {"seq": 10**12},
    {"type": "update", "channel": "trades", "symbol": "OTHER", "seq": 10**12, "trades": []},
    {"type": "update", "channel": "trades", "seq": 10**12, "trades": []},
    {"type": "update", "channel": "trades", "seq": 10**12, "trades": [{"seq": 1}]},
    {"type": "update", "channel": "trades", "seq": 10**12, "trades": "trade"},
])
async def test_a_malformed_trades_message_is_dropped_and_the_feed_goes_on(
        stream: Client, nc: Nats, symbols: list[str], forged: dict[str, object]) -> None:
    """A message unlike what svc_orders publishes never reaches a feed: its seq would
    otherwise hide every real update until the client reconnects."""
    symbol = symbols[0]
    ws = await stream.ws_connect(f"/ws/trades/?symbol={symbol}")
    await receive(ws)
    message = {"symbol": symbol, **forged}
    if isinstance(message.get("trades"), list) and message["trades"]:
        message["trades"] = [{**msgspec.to_builtins(trade(symbol, 1, 1)), "seq": 1}]
    bad = REGISTRY.get_sample_value("stream_bad_payloads_total", {"channel": "trades"}) or 0.0

    await nc.publish(subjects.trades(symbol), json_encoder.encode(message))
    await publish_trades(nc, symbol, 2, [trade(symbol, 2, 1)])
    update = await receive(ws)
    assert (update["seq"], update["trades"][0]["trade_no"]) == (2, 1)
    assert REGISTRY.get_sample_value("stream_bad_payloads_total",
                                     {"channel": "trades"}) == bad + 1
