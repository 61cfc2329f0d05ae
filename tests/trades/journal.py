"""Journals for the projection tests: random commands through the real engine, published
to JetStream exactly as svc_orders journals them, and the fold they must project to.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from random import Random
from typing import Any

import asyncpg
import msgspec
from nats.js import JetStreamContext

from common import subjects
from common.history import load_states
from common.instruments import DEFAULT_INSTRUMENT, InstrumentFile
from common.messages import (
    CancelOrder,
    Command,
    EventBatch,
    ModifyOrder,
    OrderType,
    PlaceOrder,
    Side,
    Stp,
    TimeInForce,
    TradeExecuted,
    encoder,
)
from common.orderstate import OrderState, apply
from common.views import TradeView, trade_id, trade_view
from svc_orders.matching import Exchange

ALT = InstrumentFile(symbol="ALT", tick_size="0.0025", min_price="0.0025",
                     max_price="1000.0000", lot_size=5, min_quantity=5)
BASE_NS = 1_764_000_000_000_000_000  # 2025-11-24, with sub-microsecond parts added below
USERS = [str(uuid.UUID(int=n, version=4)) for n in range(1, 5)]


def write_instruments(folder: Path) -> str:
    """An instruments file adding ALT (4 decimals, tick 0.0025, lot 5) to DEFAULT."""
    path = folder / "instruments.json"
    path.write_bytes(msgspec.json.encode([ALT]))
    return str(path)


INSTRUMENTS = {"DEFAULT": DEFAULT_INSTRUMENT, "ALT": ALT.to_instrument()}


def random_batches(count: int, seed: int) -> list[EventBatch]:
    """`count` random commands (both symbols, every order type) through the engine;
    returns the journaled batches (those with a sequence number)."""
    rng = Random(seed)
    engine = Exchange(INSTRUMENTS)
    placed: list[tuple[str, str]] = []  # order id, symbol
    batches = []
    for n in range(count):
        command = _command(rng, placed, BASE_NS + n * 1_000_777)
        batch = engine.submit(command)
        if batch.seq:
            batches.append(batch)
    return batches


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


def last_seqs(batches: Iterable[EventBatch]) -> dict[str, int]:
    seqs: dict[str, int] = {}
    for batch in batches:
        seqs[batch.symbol] = max(seqs.get(batch.symbol, 0), batch.seq)
    return seqs


def trade_ids(batches: Iterable[EventBatch]) -> list[str]:
    return [trade_id(event.symbol, event.trade_no) for batch in batches
            for event in batch.events if isinstance(event, TradeExecuted)]

