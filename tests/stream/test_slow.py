"""A client that does not read is cut off (1013) and nobody else notices."""

import asyncio
import time

from aiohttp import WSCloseCode, WSMsgType
from nats.aio.client import Client as Nats
from prometheus_client import REGISTRY

from ops.bench.ws_abandoned import Abandoned
from svc_stream.client import CLOSE_TIMEOUT
from tests.helpers import eventually
from tests.stream.conftest import MakeStream
from tests.stream.market import book, publish_book, publish_trades, receive, trade

FLOOD_SECONDS = 10.0  # ample: a few MB of socket buffers fill in well under a second
CLOSE_FRAME = bytes([0x88])  # FIN and the close opcode (RFC 6455 5.5.1)


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_slow_client_is_dropped_while_a_fast_one_gets_everything(
        make_stream: MakeStream, nc: Nats, symbols: list[str]) -> None:
    stream = await make_stream(ws_queue=8)
    symbol, path = symbols[0], f"/ws/trades/?symbol={symbols[0]}"
    fast, slow = await stream.ws_connect(path), await stream.ws_connect(path)
    assert (await receive(fast))["type"] == (await receive(slow))["type"] == "snapshot"
    seen: list[int] = []

    async def read_fast() -> None:
        while True:
            seen.append((await receive(fast))["seq"])

    reader = asyncio.create_task(read_fast())
    dropped, seq = metric("stream_clients_dropped_total"), 0
    deadline = time.monotonic() + FLOOD_SECONDS
    while metric("stream_clients_dropped_total") == dropped:  # the slow one never reads
        assert time.monotonic() < deadline, "the slow client was never dropped"
        seq += 1
        await publish_trades(nc, symbol, seq, [trade(symbol, seq, 50 * seq + i)
                                               for i in range(50)])
        await nc.flush()
    await eventually(lambda: seen and seen[-1] == seq)
    reader.cancel()
    assert seen == list(range(1, seq + 1))

    while (message := await slow.receive(timeout=5)).type is WSMsgType.TEXT:
        pass  # what the socket already held, then the close frame
    assert (message.type, message.data) == (WSMsgType.CLOSE, WSCloseCode.TRY_AGAIN_LATER)
    assert "too slow" in str(message.extra)


async def test_books_conflate_for_a_slow_reader_and_end_on_the_newest(
        make_stream: MakeStream, nc: Nats, symbols: list[str]) -> None:
    stream = await make_stream(ws_queue=8)
    symbol = symbols[0]
    ws = await stream.ws_connect("/ws/")
    await ws.send_json({"type": "subscribe", "channels": ["orderbook"], "symbols": [symbol]})
    assert (await receive(ws))["type"] == "subscribed"
    assert (await receive(ws))["type"] == "snapshot"

    conflated, seq = metric("stream_book_updates_conflated_total"), 0
    deadline = time.monotonic() + FLOOD_SECONDS
    while metric("stream_book_updates_conflated_total") < conflated + 10:  # nobody reads
        assert time.monotonic() < deadline, "book updates were never conflated"
        seq += 1
        await publish_book(nc, book(symbol, seq, 50))
        await nc.flush()

    seqs = [(await receive(ws))["seq"]]
    while seqs[-1] != seq:
        seqs.append((await receive(ws))["seq"])
    assert seqs == sorted(seqs)
    assert seqs[-1] == seq  # never left behind on an old book
    assert len(seqs) < seq  # the slow reader got fewer, not all of them
    assert not ws.closed  # conflation alone never drops a client


async def test_a_client_that_never_reads_is_cut_off_and_told_why(
        make_stream: MakeStream, nc: Nats, symbols: list[str]) -> None:
    stream = await make_stream(ws_queue=8)
    symbol, path = symbols[0], f"/ws/trades/?symbol={symbols[0]}"
    host, port = stream.host, stream.port
    assert port is not None
    _, abandoned = await asyncio.get_running_loop().create_connection(
        lambda: Abandoned(f"{host}:{port}", path), host, port)
    assert await abandoned.upgraded  # and from now on it reads nothing
    reader = await stream.ws_connect(path)
    assert (await receive(reader))["type"] == "snapshot"

    dropped, seq = metric("stream_clients_dropped_total"), 0
    deadline = time.monotonic() + FLOOD_SECONDS
    while metric("stream_clients_dropped_total") == dropped:
        assert time.monotonic() < deadline, "the abandoned client was never dropped"
        seq += 1
        await publish_trades(nc, symbol, seq, [trade(symbol, seq, 50 * seq + i)
                                               for i in range(50)])
        assert (await receive(reader))["seq"] == seq  # the other one keeps its pace
    assert metric("stream_clients") == 2  # closing: it may still read the reason

    received = await abandoned.read_to_end()
    close = received[received.rindex(CLOSE_FRAME):]  # the last frame: length, code, reason
    assert close[2:4] == WSCloseCode.TRY_AGAIN_LATER.to_bytes(2, "big")
    assert close[4:].startswith(b"too slow")
    await eventually(lambda: metric("stream_clients") == 1)
    await reader.send_json({"type": "ping"})
    assert await receive(reader) == {"type": "pong"}


async def test_a_client_that_never_reads_nor_pongs_lets_go_of_its_socket(
        make_stream: MakeStream, nc: Nats, symbols: list[str]) -> None:
    """The heartbeat gives up on it; the bytes it never took do not keep its socket open."""
    stream = await make_stream(ws_heartbeat=0.5, ws_queue=10_000)
    symbol, path = symbols[0], f"/ws/trades/?symbol={symbols[0]}"
    host, port = stream.host, stream.port
    assert port is not None
    _, abandoned = await asyncio.get_running_loop().create_connection(
        lambda: Abandoned(f"{host}:{port}", path), host, port)
    assert await abandoned.upgraded
    for seq in range(1, 200):  # megabytes: more than the socket buffers hold
        await publish_trades(nc, symbol, seq, [trade(symbol, seq, 50 * seq + i)
                                               for i in range(50)])
    assert stream.server.runner is not None
    server = stream.server.runner.server
    assert server is not None
    await eventually(lambda: not server.connections, timeout=CLOSE_TIMEOUT + FLOOD_SECONDS)
