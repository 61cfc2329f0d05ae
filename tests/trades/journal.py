"""Journals for the svc_trades tests: commands through the real engine (random ones, or
a small hand-written market), published to JetStream exactly as svc_orders journals
them; the fold they must project to; and a projector to run in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from random import Random
from typing import Any

import asyncpg
import msgspec
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext

from common import subjects
from common.instruments import DEFAULT_INSTRUMENT, InstrumentFile
from common.journal import group_id
from common.messages import (
    CancelOrder,
    Command,
    EventBatch,
    FundsExchanged,
    FundsHeld,
    FundsReleased,
    ModifyOrder,
    OrderAccepted,
    OrderRejected,
    OrderType,
    PlaceOrder,
    Side,
    Stp,
    TimeInForce,
    TradeExecuted,
    TransferFunds,
    encoder,
)
from common.orderstate import OrderState, apply
from common.views import TradeView, timestamp, trade_id, trade_view
from svc_orders.matching import Exchange
from svc_trades.projector import Projector
from svc_trades.readmodel import load_states
from svc_trades.rows import trade_of
from tests.helpers import eventually

ALT = InstrumentFile(symbol="ALT", tick_size="0.0025", min_price="0.0025",
                     max_price="1000.0000", lot_size=5, min_quantity=5)
BASE_NS = 1_764_000_000_000_000_000  # 2025-11-24, with sub-microsecond parts added below
USERS = [str(uuid.UUID(int=n, version=4)) for n in range(1, 5)]
U1, U2, U3, _ = USERS
BUY, SELL = Side.BUY, Side.SELL
SECOND = 1_000_000_000


def write_instruments(folder: Path) -> str:
    """An instruments file adding ALT (4 decimals, tick 0.0025, lot 5) to DEFAULT."""
    path = folder / "instruments.json"
    path.write_bytes(msgspec.json.encode([ALT]))
    return str(path)


INSTRUMENTS = {"DEFAULT": DEFAULT_INSTRUMENT, "ALT": ALT.to_instrument()}


def random_batches(count: int, seed: int, step_ns: int = 1_000_777) -> list[EventBatch]:
    """`count` random commands (both symbols, every order type) through the engine,
    `step_ns` apart; returns the journaled batches (those with a sequence number)."""
    rng = Random(seed)
    engine = Exchange(INSTRUMENTS)
    placed: list[tuple[str, str]] = []  # order id, symbol
    batches = []
    for n in range(count):
        command = _command(rng, placed, BASE_NS + n * step_ns)
        batch = engine.submit(command)
        if batch.seq:
            batches.append(batch)
    return batches


def funded_batches(count: int, seed: int) -> tuple[list[EventBatch], Exchange]:
    """`random_batches` through an engine with funding on, after deposits for every user
    of every asset (the later ones rarely enough that some orders are refused); also
    returns the engine, whose balances the ledger must end with. The engine's instruments
    charge fees (the projection needs none: the events carry them)."""
    rng = Random(seed)
    engine = Exchange({symbol: msgspec.structs.replace(instrument, maker_fee_bps=5,
                                                       taker_fee_bps=15)
                       for symbol, instrument in INSTRUMENTS.items()}, funding=True)
    placed: list[tuple[str, str]] = []
    batches = []
    for user in USERS:
        for asset in ("USD", "DEFAULT", "ALT"):
            batches.append(engine.submit(TransferFunds(
                transfer_id=f"open-{user}-{asset}", user_id=user, asset=asset,
                amount=rng.randrange(1, 200_000) * 10**5, timestamp=BASE_NS)))
    for n in range(count):
        now = BASE_NS + n * 1_000_777
        command = _command(rng, placed, now)
        if rng.random() < 0.05:
            command = TransferFunds(transfer_id=f"w{n}", user_id=rng.choice(USERS),
                                    asset="USD", amount=rng.randrange(1, 5000) * 10**6,
                                    withdrawal=True, timestamp=now)
        batch = engine.submit(command)
        if batch.seq:
            batches.append(batch)
    return batches, engine


def _command(rng: Random, placed: list[tuple[str, str]], now: int) -> Command:
    roll = rng.random()
    if placed and roll < 0.2:
        return CancelOrder(order_id=rng.choice(placed[-30:])[0], timestamp=now)
    if placed and roll < 0.35:
        target, symbol = rng.choice(placed[-30:])
        if rng.random() < 0.5:
            return ModifyOrder(order_id=target, price=_price(rng, symbol), timestamp=now)
        return ModifyOrder(order_id=target, quantity=rng.randrange(1, 40) * 5, timestamp=now)
    symbol = rng.choice(("DEFAULT", "ALT"))
    market = rng.random() < 0.1
    order_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    placed.append((order_id, symbol))
    return PlaceOrder(
        order_id=order_id, symbol=symbol, side=rng.choice((Side.BUY, Side.SELL)),
        quantity=rng.randrange(1, 40) * 5, price=None if market else _price(rng, symbol),
        type=OrderType.MARKET if market else OrderType.LIMIT,
        time_in_force=TimeInForce.IOC if market else rng.choice(
            (TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK)),
        post_only=not market and rng.random() < 0.1,
        stp=rng.choice((Stp.NONE, Stp.NONE, Stp.CANCEL_NEWEST)),
        user_id=rng.choice(USERS),
        client_order_id=f"c-{order_id[:8]}" if rng.random() < 0.3 else None,
        timestamp=now)


def _price(rng: Random, symbol: str) -> int:
    """Prices near the middle of each grid, so books cross often."""
    return rng.randrange(9_990, 10_010) if symbol == "DEFAULT" else rng.randrange(396, 404) * 25


async def publish(js: JetStreamContext, batches: Iterable[EventBatch],
                  deduplicate: bool = True) -> None:
    """As svc_orders journals: `Nats-Msg-Id` set (unless testing duplicates)."""
    for batch in batches:
        headers = {"Nats-Msg-Id": subjects.batch_id(batch.symbol, batch.seq)}
        await js.publish(subjects.events(batch.symbol), encoder.encode(batch),
                         headers=headers if deduplicate else None)


def grouped(batches: Iterable[EventBatch], seed: int) -> list[list[EventBatch]]:
    """The batches as svc_orders groups them: consecutive ones of one instrument, here
    1 to 8 at a time."""
    rng = Random(seed)
    groups: list[list[EventBatch]] = []
    size = 0
    for batch in batches:
        if not groups or groups[-1][-1].symbol != batch.symbol or len(groups[-1]) >= size:
            groups.append([])
            size = rng.randint(1, 8)
        groups[-1].append(batch)
    return groups


async def publish_groups(js: JetStreamContext, groups: Iterable[list[EventBatch]],
                         deduplicate: bool = True) -> None:
    """As svc_orders journals since group commit: one message per group."""
    for group in groups:
        headers = {"Nats-Msg-Id": group_id(group)}
        await js.publish(subjects.events(group[0].symbol), encoder.encode(group),
                         headers=headers if deduplicate else None)


def fold(batches: Iterable[EventBatch]) -> tuple[dict[str, OrderState], list[TradeView]]:
    """What the projection must hold: the fold of the journal, times in microseconds."""
    states: dict[str, OrderState] = {}
    trades = []
    for batch in batches:
        for event in batch.events:
            apply(states, event)
            if isinstance(event, TradeExecuted):
                trades.append(trade_view(event, INSTRUMENTS[event.symbol]))
    for state in states.values():
        state.created_at -= state.created_at % 1000
        state.updated_at -= state.updated_at % 1000
    return states, trades


async def projected_orders(pool: asyncpg.Pool) -> dict[str, OrderState]:
    async with pool.acquire() as conn:
        ids = [row["order_id"] for row in await conn.fetch("SELECT order_id FROM orders")]
        return await load_states(conn, ids, INSTRUMENTS)


async def table(pool: asyncpg.Pool, name: str) -> list[dict[str, Any]]:
    """Every row of a table, in id order: compares whole projections, ids included."""
    return [dict(row) for row in await pool.fetch(f"SELECT * FROM {name} ORDER BY id")]


async def assert_projects(pool: asyncpg.Pool, batches: list[EventBatch]) -> None:
    """PostgreSQL holds exactly the fold of `batches`, rows in journal order."""
    states, trades = fold(batches)
    assert await projected_orders(pool) == states
    assert [row["order_id"] for row in await table(pool, "orders")] == list(states)
    assert [trade_of(row, INSTRUMENTS) for row in await table(pool, "trades")] == trades
    positions = await pool.fetch("SELECT symbol, seq FROM projection_symbols")
    assert {row["symbol"]: row["seq"] for row in positions} == last_seqs(batches)


def last_seqs(batches: Iterable[EventBatch]) -> dict[str, int]:
    seqs: dict[str, int] = {}
    for batch in batches:
        seqs[batch.symbol] = max(seqs.get(batch.symbol, 0), batch.seq)
    return seqs


def trade_ids(batches: Iterable[EventBatch]) -> list[str]:
    return [trade_id(event.symbol, event.trade_no) for batch in batches
            for event in batch.events if isinstance(event, TradeExecuted)]



class Desk:
    """The engine and a clock: one command per second, order ids numbered from 1."""

    def __init__(self) -> None:
        self.engine = Exchange(INSTRUMENTS)
        self.batches: list[EventBatch] = []
        self.now = BASE_NS

    def place(self, side: Side, quantity: int, price: int | None, *, user: str,
              symbol: str = "DEFAULT", order_id: str | None = None, **extra: Any) -> str:
        order_id = order_id or str(uuid.UUID(int=len(self.batches) + 1, version=4))
        market = price is None
        self.submit(PlaceOrder(
            order_id=order_id, symbol=symbol, side=side, quantity=quantity, price=price,
            type=OrderType.MARKET if market else OrderType.LIMIT,
            time_in_force=TimeInForce.IOC if market else TimeInForce.GTC, user_id=user,
            timestamp=self.now, **extra))
        return order_id

    def submit(self, command: Command) -> EventBatch:
        batch = self.engine.submit(command)
        assert batch.seq, batch
        self.batches.append(batch)
        self.now += SECOND
        return batch


def market() -> list[EventBatch]:
    """A small market with every status, both instruments, and two pages of everything.

    DEFAULT (2 decimals): the original README's buy 100 @ 150.25 (client id "a1") is hit
    by sells of 50 and 30; a bid is placed and cancelled; a post-only sell is rejected;
    30 one-lot bids at 100.00, then a market sell of 45 takes the rest of the first buy
    and 25 of them. ALT (4 decimals): one trade at 0.9975.
    """
    desk = Desk()
    first = desk.place(BUY, 100, 15025, user=U1, client_order_id="a1")
    desk.place(SELL, 50, 15020, user=U2)
    desk.place(SELL, 30, 15025, user=U3)
    bid = desk.place(BUY, 10, 14900, user=U2)
    desk.submit(CancelOrder(order_id=bid, timestamp=desk.now))
    desk.place(SELL, 5, 15000, user=U3, post_only=True)
    desk.place(SELL, 25, 9975, user=U1, symbol="ALT")
    desk.place(BUY, 10, 10000, user=U2, symbol="ALT")
    for _ in range(30):
        desk.place(BUY, 1, 10000, user=U3)
    desk.place(SELL, 45, None, user=U1)
    assert desk.engine.live_order(first) is None
    return desk.batches


def timestamp_of(batch: EventBatch) -> str:
    """When the batch's command ran, as the API writes timestamps."""
    event = batch.events[0]
    if isinstance(event, OrderAccepted | OrderRejected):
        return timestamp(event.order.timestamp)
    assert not isinstance(event, FundsHeld | FundsReleased | FundsExchanged), "never first"
    return timestamp(event.timestamp)


def start(pool: asyncpg.Pool, nc: Nats,
          batch: int) -> tuple[Projector, asyncio.Task[None]]:
    projector = Projector(pool, nc, INSTRUMENTS, batch=batch)
    return projector, asyncio.get_running_loop().create_task(projector.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def projecting(pool: asyncpg.Pool, nc: Nats,
                     batch: int = 37) -> AsyncIterator[Projector]:
    projector, task = start(pool, nc, batch)
    try:
        yield projector
    finally:
        await stop(task)


async def stream_position(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval(
        "SELECT coalesce(max(stream_seq), 0) FROM projection_consumers") or 0)


async def projected_with_stops(pool: asyncpg.Pool, nc: Nats, js: JetStreamContext,
                               stops: tuple[int, ...]) -> None:
    """Project the journal, cancelling the projector wherever it is (in a fetch,
    mid-transaction, between commit and acks) once it has passed each of `stops`, and
    starting it again; then to the journal's end."""
    for stop_after in stops:
        async with projecting(pool, nc, batch=7):
            async def far_enough(stop_after: int = stop_after) -> bool:
                return await stream_position(pool) >= stop_after
            await eventually(far_enough, timeout=20.0)
    async with projecting(pool, nc, batch=7):
        await caught_up(pool, js)


async def caught_up(pool: asyncpg.Pool, js: JetStreamContext) -> None:
    """Wait until the projection has reached the end of the journal."""
    last = (await js.stream_info(subjects.STREAM)).state.last_seq

    async def done() -> bool:
        return await stream_position(pool) == last
    await eventually(done, timeout=20.0)
