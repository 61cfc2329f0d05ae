"""The standard workload journaled as svc_orders journals it, published from another
process (as svc_orders would: it does not share the benchmark's core).

How many commands share a journal message depends on how many arrive in one step of
svc_orders' event loop: `python -m ops.bench.api` prints it (`commands_per_message`)
for its load; the journal benchmarks take it as `--group`.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from pathlib import Path

import nats
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NotFoundError

from common import subjects
from common.instruments import Instrument
from common.journal import ensure_stream, group_id
from common.messages import EventBatch, TradeExecuted, encoder
from ops.bench.workload import parse
from svc_orders.matching import Exchange

PUBLISH_WINDOW = 5_000  # acknowledgements outstanding while publishing
# Commands per journal message: what svc_orders wrote under ops.bench.api's load at 64
# connections (`commands_per_message`, 20-30 on 2 cores).
GROUP = 24


def journal(workload: Path, trades: int) -> tuple[list[EventBatch], dict[str, Instrument]]:
    """The journaled batches of the workload's first commands that make `trades` trades."""
    commands, instruments = parse(workload)
    exchange = Exchange(instruments)
    batches: list[EventBatch] = []
    made = 0
    for command in commands:
        batch = exchange.submit(command)
        if batch.seq:
            batches.append(batch)
            made += sum(type(event) is TradeExecuted for event in batch.events)
            if made >= trades:
                break
    return batches, instruments


async def publish(js: JetStreamContext, payloads: list[tuple[str, bytes, str]]) -> float:
    """Publish as svc_orders journals (pipelined, de-duplicated); returns seconds taken."""
    started = time.perf_counter()
    pending: list[asyncio.Future[PubAck]] = []
    for subject, data, msg_id in payloads:
        pending.append(await js.publish_async(subject, data, headers={"Nats-Msg-Id": msg_id}))
        if len(pending) >= PUBLISH_WINDOW:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return time.perf_counter() - started


def journal_payloads(batches: list[EventBatch], group: int) -> list[tuple[str, bytes, str]]:
    """(subject, msgpack, Nats-Msg-Id) of each journal message as svc_orders writes it:
    up to `group` consecutive batches of one instrument per message (group commit)."""
    groups: list[list[EventBatch]] = []
    for batch in batches:
        last = groups[-1] if groups else None
        if last is None or len(last) >= group or last[0].symbol != batch.symbol:
            groups.append([batch])
        else:
            last.append(batch)
    return [(subjects.events(g[0].symbol), encoder.encode(g), group_id(g)) for g in groups]


async def fresh_stream(js: JetStreamContext) -> None:
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(subjects.STREAM)
    await ensure_stream(js)


def publish_from_here(nats_url: str, payloads: list[tuple[str, bytes, str]]) -> None:
    async def go() -> None:
        nc = await nats.connect(nats_url)
        await publish(nc.jetstream(publish_async_max_pending=2 * PUBLISH_WINDOW), payloads)
        await nc.close()
    asyncio.run(go())


async def publisher(nats_url: str, payloads: list[tuple[str, bytes, str]]) -> None:
    """Publish from another process, as svc_orders would: it does not share our core."""
    process = multiprocessing.get_context("spawn").Process(
        target=publish_from_here, args=(nats_url, payloads))
    process.start()
    await asyncio.get_running_loop().run_in_executor(None, process.join)
    if process.exitcode != 0:
        raise SystemExit(f"the publisher failed with exit code {process.exitcode}")
