"""Property tests: the engine against the reference model on random command streams.

Each example is a stream of 1-80 commands of every kind over two instruments (plus an
unknown symbol), with prices in a narrow band so orders cross often, three users plus
anonymous orders, every time in force, market and post-only orders, every STP mode, and
cancels/modifies of live, dead and never-issued ids, invalid quantities and prices.
After every command: the engine's batch equals the model's (CommandRejected.message is
free text and ignored), the books are equal, and the invariants hold on the engine alone
(not crossed, no empty levels, gap-free seq and trade numbers, trades at the maker's price,
per-order conservation folded from the events). At the end: a restore of the captured
engine state and a replay of the (msgpack round-tripped) journal both equal the engine and
keep behaving like it. A second property cuts a stream anywhere: the state captured there
plus the journal after it rebuilds the engine, as svc_orders does on start.

Set ENGINE_EXAMPLES to change the number of examples and ENGINE_DERANDOMIZE=1 for a
fixed, reproducible run (CI).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as statistic
from hypothesis import strategies as st

from common.instruments import Instrument
from common.messages import (
    CancelOrder,
    Command,
    CommandRejected,
    Event,
    EventBatch,
    ExpireOrders,
    ModifyOrder,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderModified,
    OrderRejected,
    OrderType,
    PlaceOrder,
    Side,
    Stp,
    TimeInForce,
    TradeExecuted,
    batch_decoder,
    encoder,
)
from svc_orders.matching import Exchange
from svc_orders.matching.funds import BALANCE_EVENTS
from tests.engine.reference import ExchangeApi, ReferenceExchange

# ---- instruments ---------------------------------------------------------------------

PLAIN = Instrument(symbol="PLAIN")  # like DEFAULT: tick 1, lot 1, wide bounds
COARSE = Instrument(symbol="COARSE", tick=5, lot=10, min_price=50, max_price=150,
                    min_quantity=10, max_quantity=1000)
INSTRUMENTS = {i.symbol: i for i in (PLAIN, COARSE)}
UNKNOWN = "NOPE"

ENGINE_SETTINGS = settings(
    max_examples=int(os.environ.get("ENGINE_EXAMPLES", "300")),
    deadline=None,
    derandomize=os.environ.get("ENGINE_DERANDOMIZE") == "1",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---- strategies ----------------------------------------------------------------------

T = TypeVar("T")

USERS = st.sampled_from(["u1", "u2", "u3", None])
STPS = st.sampled_from([Stp.NONE, Stp.CANCEL_NEWEST, Stp.CANCEL_OLDEST, Stp.CANCEL_BOTH])
WILD_INTS = st.sampled_from([0, -1, -10, 10**12, -(10**12), 2**63])


@st.composite
def mostly(draw: st.DrawFn, common: st.SearchStrategy[T], rare: st.SearchStrategy[T],
           one_in: int) -> T:
    """`common`, but about once in `one_in` draws `rare` (shrinks towards `common`)."""
    return draw(rare if draw(st.integers(0, one_in - 1)) == one_in - 1 else common)


SYMBOLS = mostly(st.sampled_from([PLAIN.symbol, COARSE.symbol]), st.just(UNKNOWN), 25)


def prices(symbol: str, side: Side | None = None) -> st.SearchStrategy[int]:
    """Valid prices in a narrow band, about one in 12 invalid.

    Buys lean low and sells high, so the books hold some depth yet cross often; without
    a side (modify), the whole band.
    """
    low, high = {Side.BUY: (-3, 1), Side.SELL: (-1, 3), None: (-3, 3)}[side]
    if symbol == COARSE.symbol:
        valid = st.integers(20 + low, 20 + high).map(lambda n: n * 5)  # 85..115, tick 5
        invalid = st.sampled_from([45, 155, 97, 103, -5, 0, 10**12])  # bounds and off-tick
        edges = st.sampled_from([50, 150])
        return mostly(mostly(valid, edges, 30), invalid, 12)
    valid = st.integers(100 + low, 100 + high)
    edges = st.sampled_from([1, 99_999_999])
    invalid = st.one_of(st.just(100_000_000), WILD_INTS)
    return mostly(mostly(valid, edges, 30), invalid, 12)


def quantities(symbol: str) -> st.SearchStrategy[int]:
    """Valid small quantities, about one in 12 zero, negative, off-lot or too big."""
    if symbol == COARSE.symbol:
        valid = st.integers(1, 8).map(lambda n: n * 10)
        edges = st.sampled_from([10, 1000])
        invalid = st.one_of(st.sampled_from([5, 15, 1010, 995]), WILD_INTS)
        return mostly(mostly(valid, edges, 30), invalid, 12)
    valid = st.integers(1, 8)
    edges = st.sampled_from([1, 1_000_000])
    invalid = st.one_of(st.just(1_000_001), WILD_INTS)
    return mostly(mostly(valid, edges, 30), invalid, 12)


@dataclass
class Ids:
    """Order ids handed out so far, to aim cancels/modifies/duplicates at real orders."""

    issued: dict[str, str] = field(default_factory=dict)  # order_id -> symbol
    live: list[str] = field(default_factory=list)

    def dead(self) -> list[str]:
        return [i for i in self.issued if i not in self.live]

    def fresh(self) -> str:
        return f"o{len(self.issued) + 1}"

    def note(self, cmd: Command, ex: Exchange) -> None:
        """Take account of a command just submitted to `ex`."""
        if isinstance(cmd, PlaceOrder) and cmd.order_id not in self.issued:
            self.issued[cmd.order_id] = cmd.symbol
        self.live = [order_id for order_id in self.issued if ex.live_order(order_id)]


def existing_id(ids: Ids) -> st.SearchStrategy[str]:
    """A live id most often, else a dead one, else one never issued."""
    other = st.sampled_from(["never", "o0", ""])
    if ids.dead():
        other = mostly(st.sampled_from(ids.dead()), other, 3)
    if not ids.live:
        return other
    return mostly(st.sampled_from(ids.live), other, 6)


@st.composite
def place_orders(draw: st.DrawFn, ids: Ids, timestamp: int) -> PlaceOrder:
    symbol = draw(SYMBOLS)
    bands = symbol if symbol in INSTRUMENTS else PLAIN.symbol
    side = draw(st.sampled_from(Side))
    order_id = draw(mostly(st.just(ids.fresh()), existing_id(ids), 12))
    order_type = draw(mostly(st.just(OrderType.LIMIT), st.just(OrderType.MARKET), 6))
    price: int | None
    if order_type is OrderType.LIMIT:
        price = draw(mostly(prices(bands, side), st.none(), 40))
        tif = draw(st.sampled_from([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC,
                                    TimeInForce.FOK, TimeInForce.DAY, TimeInForce.DAY]))
        post_only = draw(mostly(st.just(False), st.just(True), 3))
    else:
        price = draw(mostly(st.none(), prices(bands, side), 30))
        tif = draw(mostly(st.sampled_from([TimeInForce.IOC, TimeInForce.FOK]),
                          st.sampled_from([TimeInForce.GTC, TimeInForce.DAY]), 20))
        post_only = draw(mostly(st.just(False), st.just(True), 30))
    return PlaceOrder(
        order_id=order_id, symbol=symbol, side=side,
        quantity=draw(quantities(bands)), price=price, type=order_type, time_in_force=tif,
        post_only=post_only, stp=draw(STPS), user_id=draw(USERS),
        client_order_id=draw(st.sampled_from([None, "c-1"])), timestamp=timestamp,
    )


@st.composite
def commands(draw: st.DrawFn, ids: Ids, timestamp: int) -> Command:
    kind = draw(st.sampled_from(["place"] * 6 + ["cancel", "modify", "modify", "expire"]))
    if kind == "place":
        return draw(place_orders(ids, timestamp))
    if kind == "expire":
        return ExpireOrders(symbol=draw(SYMBOLS), timestamp=timestamp)
    order_id = draw(existing_id(ids))
    if kind == "cancel":
        return CancelOrder(order_id=order_id, timestamp=timestamp)
    bands = ids.issued.get(order_id, PLAIN.symbol)
    what = draw(mostly(st.sampled_from(["price", "quantity", "both"]), st.just("neither"), 25))
    price = draw(prices(bands)) if what in ("price", "both") else None
    quantity = draw(quantities(bands)) if what in ("quantity", "both") else None
    return ModifyOrder(order_id=order_id, price=price, quantity=quantity, timestamp=timestamp)


# ---- comparison helpers --------------------------------------------------------------


def without_messages(batch: EventBatch) -> EventBatch:
    """The batch with CommandRejected.message blanked: it is free text."""
    events: list[Event] = [msgspec.structs.replace(e, message="")
                           if isinstance(e, CommandRejected) else e for e in batch.events]
    return EventBatch(symbol=batch.symbol, seq=batch.seq, events=events)


def journaled(batch: EventBatch) -> EventBatch:
    """The batch as the journal gives it back: through msgpack, as svc_orders sends it."""
    copy = batch_decoder.decode(encoder.encode(batch))
    assert copy == batch
    return copy


def book_of(ex: ExchangeApi) -> dict[str, object]:
    """Everything observable about an exchange's books, for equality checks."""
    return {symbol: (ex.seq(symbol), ex.levels(symbol, Side.BUY), ex.levels(symbol, Side.SELL))
            for symbol in INSTRUMENTS}


# ---- invariants folded from the engine's own events ---------------------------------


@dataclass
class Fold:
    """One accepted order as its events tell it."""

    placed: PlaceOrder
    symbol: str
    side: Side
    type: OrderType
    price: int | None
    quantity: int
    traded: int = 0
    cancelled: int = 0

    @property
    def remaining(self) -> int:
        return self.quantity - self.traded - self.cancelled


@dataclass
class Ledger:
    """Folds the engine's batches and checks the invariants that need no model."""

    seq: dict[str, int] = field(default_factory=lambda: dict.fromkeys(INSTRUMENTS, 0))
    trade_no: dict[str, int] = field(default_factory=lambda: dict.fromkeys(INSTRUMENTS, 0))
    orders: dict[str, Fold] = field(default_factory=dict)

    def record(self, cmd: Command, batch: EventBatch) -> None:
        if batch.seq == 0:
            assert all(isinstance(e, CommandRejected) for e in batch.events), batch
            assert len(batch.events) <= 1, batch
            assert batch.events or isinstance(cmd, ExpireOrders), batch
            return
        assert batch.symbol in INSTRUMENTS, batch
        assert batch.seq == self.seq[batch.symbol] + 1, f"seq gap: {batch}"
        self.seq[batch.symbol] = batch.seq
        assert batch.events, batch
        for event in batch.events:
            assert not isinstance(event, CommandRejected), batch
            assert event.seq == batch.seq, batch
            assert not isinstance(event, BALANCE_EVENTS), "funding is off"
            stamp = (event.order.timestamp if isinstance(event, OrderAccepted | OrderRejected)
                     else event.timestamp)
            assert stamp == cmd.timestamp, batch
            self.fold(batch.symbol, event)

    def fold(self, symbol: str, event: Event) -> None:
        match event:
            case OrderAccepted(order=placed):
                previous = self.orders.get(placed.order_id)
                assert previous is None or previous.remaining == 0, "live id accepted again"
                assert placed.symbol == symbol
                self.orders[placed.order_id] = Fold(placed, symbol, placed.side, placed.type,
                                                    placed.price, placed.quantity)
            case OrderRejected(order=placed):
                assert placed.symbol == symbol
            case TradeExecuted():
                self.trade(symbol, event)
            case OrderModified():
                order = self.orders[event.order_id]
                assert order.symbol == symbol
                assert order.remaining > 0
                assert event.quantity > order.traded
                order.quantity, order.price = event.quantity, event.price
            case OrderCancelled() | OrderExpired():
                order = self.orders[event.order_id]
                assert order.symbol == symbol
                assert 0 < event.quantity == order.remaining, event
                order.cancelled += event.quantity
            case _:
                raise AssertionError(f"unexpected event {event}")

    def trade(self, symbol: str, event: TradeExecuted) -> None:
        assert event.symbol == symbol
        self.trade_no[symbol] += 1
        assert event.trade_no == self.trade_no[symbol], f"trade_no gap: {event}"
        assert event.quantity > 0, event
        buy, sell = self.orders[event.buy_order_id], self.orders[event.sell_order_id]
        assert (buy.side, sell.side) == (Side.BUY, Side.SELL), event
        assert buy.symbol == sell.symbol == symbol
        maker, taker = (sell, buy) if event.aggressor_side is Side.BUY else (buy, sell)
        assert event.price == maker.price, f"trade not at the maker's price: {event}"
        if taker.type is OrderType.LIMIT:
            assert taker.price is not None
            assert (event.price <= taker.price if taker.side is Side.BUY
                    else event.price >= taker.price), f"trade beyond the taker's limit: {event}"
        for order in (buy, sell):
            assert event.quantity <= order.remaining, event
            order.traded += event.quantity

    def check_engine(self, ex: Exchange) -> None:
        live: set[str] = set()
        for symbol in INSTRUMENTS:
            assert ex.seq(symbol) == self.seq[symbol]
            bid, ask = ex.best(symbol)
            assert bid is None or ask is None or bid < ask, f"{symbol} crossed: {bid} {ask}"
            sides = {side: ex.levels(symbol, side) for side in Side}
            for side, levels in sides.items():
                prices_ = [price for price, _ in levels]
                ordered = sorted(prices_, reverse=side is Side.BUY)
                assert prices_ == ordered, levels
                assert len(set(prices_)) == len(prices_), levels
                for price, queue in levels:
                    assert queue, f"empty level {price}"
                    for order_id, remaining in queue:
                        assert remaining > 0, (order_id, remaining)
                        fold = self.orders[order_id]
                        assert (fold.symbol, fold.side, fold.price) == (symbol, side, price)
                        assert fold.cancelled == 0, order_id
                        assert remaining == fold.remaining, order_id
                        assert order_id not in live
                        live.add(order_id)
                        self.check_live_order(ex, order_id, remaining)
            assert (bid, ask) == tuple(levels[0][0] if levels else None
                                       for levels in (sides[Side.BUY], sides[Side.SELL]))
            bids, asks = ex.depth(symbol, 3)
            for depth, levels in ((bids, sides[Side.BUY]), (asks, sides[Side.SELL])):
                assert depth == [(price, sum(q for _, q in queue), len(queue))
                                 for price, queue in levels[:3]]
        for order_id, fold in self.orders.items():
            if order_id not in live:
                assert fold.remaining == 0, f"{order_id} left the book unaccounted: {fold}"
                assert ex.live_order(order_id) is None, order_id

    def check_live_order(self, ex: Exchange, order_id: str, remaining: int) -> None:
        order = ex.live_order(order_id)
        assert order is not None, order_id
        fold = self.orders[order_id]
        assert (order.order_id, order.symbol, order.side, order.price) == (
            order_id, fold.symbol, fold.side, fold.price)
        assert (order.quantity, order.remaining, order.traded, order.cancelled) == (
            fold.quantity, remaining, fold.traded, 0)
        assert order.quantity == order.remaining + order.traded + order.cancelled
        placed = fold.placed  # what modify cannot change
        assert (order.type, order.time_in_force, order.user_id, order.stp, order.post_only) == (
            placed.type, placed.time_in_force, placed.user_id, placed.stp, placed.post_only)


# ---- the properties ------------------------------------------------------------------


def sweeps(timestamp: int) -> Iterable[Command]:
    """Commands that touch whatever rests: expiry and big market orders both ways."""
    for symbol, instrument in INSTRUMENTS.items():
        yield ExpireOrders(symbol=symbol, timestamp=timestamp)
        for n, side in enumerate(Side):
            yield PlaceOrder(order_id=f"sweep-{symbol}-{n}", symbol=symbol, side=side,
                             quantity=instrument.max_quantity, type=OrderType.MARKET,
                             time_in_force=TimeInForce.IOC, timestamp=timestamp)


@ENGINE_SETTINGS
@given(data=st.data())
def test_engine_equals_reference_model(data: st.DataObject) -> None:
    engine, model = Exchange(INSTRUMENTS), ReferenceExchange(INSTRUMENTS)
    ledger, ids = Ledger(), Ids()
    journal: list[EventBatch] = []
    steps = data.draw(st.integers(1, 80), label="steps")
    for step in range(steps):
        cmd = data.draw(commands(ids, timestamp=1_000 * (step + 1)), label=f"command {step}")
        got = engine.submit(cmd)
        want = model.submit(cmd)
        assert without_messages(got) == want, f"after {cmd}"
        assert book_of(engine) == book_of(model), f"after {cmd}"
        ledger.record(cmd, got)
        ledger.check_engine(engine)
        for e in got.events:  # what the stream exercised (--hypothesis-show-statistics)
            statistic(type(e).__name__ + (f" {e.reason.value}" if hasattr(e, "reason") else ""))
        if got.seq:
            journal.append(journaled(got))
        ids.note(cmd, engine)

    restored = Exchange.restore(engine.capture(), INSTRUMENTS)
    replayed = Exchange(INSTRUMENTS)
    for batch in journal:
        replayed.apply(batch)
    assert book_of(restored) == book_of(engine)
    assert book_of(replayed) == book_of(engine)
    restored.check()  # the level totals too, which `book_of` does not show
    replayed.check()

    # All four keep behaving identically: a few more random commands, then sweeps.
    more = data.draw(st.integers(0, 5), label="more")
    for n in range(more + 1):
        tail = ([data.draw(commands(ids, timestamp=10**9 + n), label=f"more {n}")]
                if n < more else list(sweeps(2 * 10**9)))
        for cmd in tail:
            got = engine.submit(cmd)
            assert without_messages(got) == model.submit(cmd), f"after {cmd}"
            assert restored.submit(cmd) == got, f"restored differs after {cmd}"
            assert replayed.submit(cmd) == got, f"replayed differs after {cmd}"
            ledger.record(cmd, got)
            ids.note(cmd, engine)
    ledger.check_engine(engine)
    assert book_of(restored) == book_of(engine) == book_of(replayed) == book_of(model)


@ENGINE_SETTINGS
@given(data=st.data())
def test_captured_state_plus_later_journal_rebuilds_the_engine(data: st.DataObject) -> None:
    """The state captured at any point, plus the journal after it, rebuilds the engine; a
    restored copy fed the same commands answers exactly the same."""
    engine, ids = Exchange(INSTRUMENTS), Ids()
    steps = data.draw(st.integers(1, 40), label="steps")
    cut = data.draw(st.integers(0, steps), label="cut")
    twin: Exchange | None = None  # restored at the cut, then fed the same commands
    captured = b""
    later: list[EventBatch] = []  # the journal after the capture
    for step in range(steps + 1):
        if step == cut:
            captured = engine.capture()
            twin = Exchange.restore(captured, INSTRUMENTS)
            assert book_of(twin) == book_of(engine)
        if step == steps:
            break
        cmd = data.draw(commands(ids, timestamp=step + 1), label=f"command {step}")
        got = engine.submit(cmd)
        if twin is not None:
            assert twin.submit(cmd) == got, f"after {cmd}"
            if got.seq:
                later.append(journaled(got))
        ids.note(cmd, engine)
    rebuilt = Exchange.restore(captured, INSTRUMENTS)
    for batch in later:
        rebuilt.apply(batch)
    assert twin is not None
    assert book_of(twin) == book_of(engine)
    assert book_of(rebuilt) == book_of(engine)
    for cmd in sweeps(10**9):
        got = engine.submit(cmd)
        assert rebuilt.submit(cmd) == got, f"rebuilt differs after {cmd}"


# ---- long streams: deep books, many levels ------------------------------------------


def long_stream(rng: random.Random, length: int, ex: Exchange) -> Iterator[Command]:
    """`length` plain-random commands with a wide band: hundreds of resting orders on tens
    of levels, which the short hypothesis streams never build. Mostly valid input."""
    issued: list[tuple[str, str]] = []
    live: list[tuple[str, str]] = []
    for n in range(1, length + 1):
        if n % 20 == 1:
            live = [(order_id, s) for order_id, s in issued if ex.live_order(order_id)]
        roll = rng.random()
        if roll < 0.72 or not live:
            symbol = PLAIN.symbol if rng.random() < 0.7 else COARSE.symbol
            unit, lot, spread = (1, 1, 12) if symbol == PLAIN.symbol else (5, 10, 8)
            side = rng.choice(list(Side))
            centre = 100 - spread // 2 * unit if side is Side.BUY else 100 + spread // 2 * unit
            market = rng.random() < 0.05
            yield PlaceOrder(
                order_id=f"L{n}", symbol=symbol, side=side,
                quantity=lot * rng.randint(1, 20) if rng.random() < 0.97 else 0,
                price=None if market else centre + unit * rng.randint(-spread, spread),
                type=OrderType.MARKET if market else OrderType.LIMIT,
                time_in_force=(rng.choice([TimeInForce.IOC, TimeInForce.FOK]) if market else
                               rng.choice([TimeInForce.GTC] * 6 + [TimeInForce.DAY] * 2
                                          + [TimeInForce.IOC, TimeInForce.FOK])),
                post_only=not market and rng.random() < 0.2,
                stp=rng.choice(list(Stp)), user_id=rng.choice(["u1", "u2", "u3", None]),
                timestamp=n,
            )
            issued.append((f"L{n}", symbol))
        elif roll < 0.8:
            yield CancelOrder(order_id=rng.choice(live if rng.random() < 0.9 else issued)[0],
                              timestamp=n)
        elif roll < 0.995:
            order_id, symbol = rng.choice(live)
            unit, lot = (1, 1) if symbol == PLAIN.symbol else (5, 10)
            price = 100 + unit * rng.randint(-9, 9) if rng.random() < 0.6 else None
            quantity = lot * rng.randint(1, 25) if price is None or rng.random() < 0.3 else None
            yield ModifyOrder(order_id=order_id, price=price, quantity=quantity, timestamp=n)
        else:
            yield ExpireOrders(symbol=rng.choice(list(INSTRUMENTS)), timestamp=n)


@pytest.mark.parametrize("seed", range(6))
def test_long_streams_match_the_model(seed: int) -> None:
    engine, model, ledger = Exchange(INSTRUMENTS), ReferenceExchange(INSTRUMENTS), Ledger()
    journal: list[EventBatch] = []
    deepest = 0
    for n, cmd in enumerate(long_stream(random.Random(seed), 4_000, engine)):
        got = engine.submit(cmd)
        assert without_messages(got) == model.submit(cmd), f"after {cmd}"
        ledger.record(cmd, got)
        if got.seq:
            journal.append(got)
        if n % 50 == 0:
            assert book_of(engine) == book_of(model), f"after {cmd}"
            ledger.check_engine(engine)
            deepest = max(deepest, sum(len(engine.levels(s, side))
                                       for s in INSTRUMENTS for side in Side))
    assert book_of(engine) == book_of(model)
    ledger.check_engine(engine)
    assert deepest >= 30, "the stream should build deep books"
    replayed = Exchange(INSTRUMENTS)
    for batch in journal:
        replayed.apply(batch)
    restored = Exchange.restore(engine.capture(), INSTRUMENTS)
    assert book_of(replayed) == book_of(restored) == book_of(engine)
    replayed.check()
    restored.check()
    for cmd in sweeps(10**9):
        got = engine.submit(cmd)
        assert without_messages(got) == model.submit(cmd)
        assert replayed.submit(cmd) == restored.submit(cmd) == got
