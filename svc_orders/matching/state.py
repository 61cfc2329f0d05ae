"""The engine's state as bytes: every book's counters and resting orders in queue order.

What `Exchange.capture` writes and `Exchange.restore` reads (the service stores it with
its journal position). msgpack of array-like Structs: compact, and restoring re-queues
orders in the stored order, which reproduces each level's FIFO exactly.
"""

from __future__ import annotations

import msgspec

from svc_orders.matching.funds import FundsState
from svc_orders.matching.order import Order

STATE_VERSION = 1


class BookState(msgspec.Struct, frozen=True, array_like=True):
    symbol: str
    seq: int
    trade_no: int
    orders: list[Order]  # bids then asks, each best price first, oldest first


class EngineState(msgspec.Struct, frozen=True):
    version: int
    books: list[BookState]
    funds: FundsState | None = None  # balances, with funding on


_decoder = msgspec.msgpack.Decoder(EngineState)


def encode(books: list[BookState], funds: FundsState | None = None) -> bytes:
    return msgspec.msgpack.encode(EngineState(STATE_VERSION, books, funds))


def decode(data: bytes) -> EngineState:
    state = _decoder.decode(data)
    if state.version != STATE_VERSION:
        raise ValueError(f"engine state version {state.version} is not {STATE_VERSION}")
    return state
