"""Property tests of funding: the engine with balances against the funded reference model.

Random streams interleave deposits and withdrawals (of four assets and an unknown one,
repeated transfer ids, amounts too large or not positive) with every order command of
`test_properties`, for three users (and anonymous orders, which have no funds) on two
instruments with different quote assets and fees. After every command: the engine's
batch equals the model's, and on the engine alone, from its own events: per asset the
sum of all balances and the fee account equals deposits minus withdrawals, each user's
held equals what their live orders need, nothing is negative. At the end a restore of
the captured state and a replay of the journal give the same balances and keep
answering like the engine.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict

import msgspec
import pytest
from hypothesis import event as statistic
from hypothesis import given, settings
from hypothesis import strategies as st

from common.assets import BASE_UNIT
from common.messages import (
    CancelOrder,
    Command,
    EventBatch,
    ExpireOrders,
    FundsExchanged,
    FundsHeld,
    FundsReleased,
    FundsTransferred,
    ModifyOrder,
    OrderRejected,
    OrderType,
    PlaceOrder,
    RejectReason,
    Side,
    TimeInForce,
    TransferFunds,
)
from svc_orders.matching import Exchange
from tests.engine.funded_reference import FundedReference
from tests.engine.test_properties import (
    COARSE,
    ENGINE_SETTINGS,
    PLAIN,
    Ids,
    book_of,
    commands,
    journaled,
    long_stream,
    mostly,
    without_messages,
)

FUNDED = {
    "PLAIN": msgspec.structs.replace(PLAIN, maker_fee_bps=10, taker_fee_bps=25),
    "COARSE": msgspec.structs.replace(COARSE, base="GOLD", quote="EUR", taker_fee_bps=30),
}
ASSETS = ["PLAIN", "USD", "GOLD", "EUR"]
FUNDED_USERS = st.sampled_from(["u1", "u2", "u3"])


@st.composite
def transfers(draw: st.DrawFn, number: int, timestamp: int) -> TransferFunds:
    whole = draw(mostly(st.integers(1, 400), st.sampled_from([0, -5, 2**70]), 20))
    return TransferFunds(
        transfer_id=draw(mostly(st.just(f"t{number}"), st.sampled_from(["t1", "t2"]), 10)),
        user_id=draw(FUNDED_USERS), asset=draw(mostly(st.sampled_from(ASSETS),
                                                      st.just("NOPE"), 30)),
        amount=whole * BASE_UNIT // draw(st.sampled_from([1, 1, 7])),
        withdrawal=draw(st.booleans()), timestamp=timestamp)


@st.composite
def funded_commands(draw: st.DrawFn, ids: Ids, number: int, timestamp: int) -> Command:
    if draw(st.integers(0, 3)) == 0:
        return draw(transfers(number, timestamp))
    command = draw(commands(ids, timestamp))
    if isinstance(command, PlaceOrder) and command.user_id is None and draw(st.booleans()):
        command = msgspec.structs.replace(command, user_id=draw(FUNDED_USERS))
    return command


def funded_sweeps(engine: Exchange, timestamp: int) -> list[Command]:
    """Cancel whatever rests, then expire: every hold must come back."""
    return [*(CancelOrder(order_id=order_id, timestamp=timestamp) for order_id in engine.orders),
            *(ExpireOrders(symbol=symbol, timestamp=timestamp) for symbol in FUNDED)]


class Balances:
    """The engine's balances folded from its own events, and the invariants on them."""

    def __init__(self) -> None:
        self.available: dict[tuple[str | None, str], int] = defaultdict(int)
        self.held: dict[tuple[str | None, str], int] = defaultdict(int)
        self.fees: dict[str, int] = defaultdict(int)
        self.net: dict[str, int] = defaultdict(int)

    def fold(self, batch: EventBatch) -> None:
        for event in batch.events:
            if isinstance(event, FundsTransferred):
                signed = -event.amount if event.withdrawal else event.amount
                self.available[(event.user_id, event.asset)] += signed
                self.net[event.asset] += signed
            elif isinstance(event, FundsHeld | FundsReleased):
                sign = 1 if isinstance(event, FundsHeld) else -1
                self.available[(event.user_id, event.asset)] -= sign * event.amount
                self.held[(event.user_id, event.asset)] += sign * event.amount
            elif isinstance(event, FundsExchanged):
                self.held[(event.buyer_user_id, event.quote)] -= event.amount + event.buyer_fee
                self.held[(event.seller_user_id, event.base)] -= event.base_amount
                self.available[(event.buyer_user_id, event.base)] += event.base_amount
                self.available[(event.seller_user_id, event.quote)] += (
                    event.amount - event.seller_fee)
                self.fees[event.quote] += event.buyer_fee + event.seller_fee

    def check(self, engine: Exchange, model: FundedReference) -> None:
        funds = engine.funds
        assert funds is not None
        for key in set(self.available) | set(self.held):
            assert self.available[key] >= 0, key
            assert self.held[key] >= 0, key
            assert funds.balances.get(key, [0, 0]) == [self.available[key], self.held[key]]
        for asset in ASSETS:
            total = (sum(v for (_, a), v in self.available.items() if a == asset)
                     + sum(v for (_, a), v in self.held.items() if a == asset)
                     + self.fees[asset])
            assert total == self.net[asset], asset
        needs: dict[tuple[str | None, str], int] = defaultdict(int)
        for book in model.books.values():
            for order in book.resting:
                instrument = FUNDED[order.symbol]
                asset = instrument.quote if order.side is Side.BUY else instrument.base_asset
                needs[(order.user_id, asset)] += model.need(order)
        for key, held in self.held.items():
            assert held == needs[key], (key, held, needs[key])
        engine.check()


# A third of the order-only examples: each step here checks every balance and hold.
FUNDED_SETTINGS = settings(ENGINE_SETTINGS, max_examples=max(
    1, ENGINE_SETTINGS.max_examples // 3))


@FUNDED_SETTINGS
@given(data=st.data())
def test_funded_engine_equals_funded_model(data: st.DataObject) -> None:
    engine, model = Exchange(FUNDED, funding=True), FundedReference(FUNDED)
    ids, balances = Ids(), Balances()
    journal: list[EventBatch] = []
    steps = data.draw(st.integers(1, 80), label="steps")
    seeds = data.draw(st.lists(st.sampled_from([0, 5, 50, 500]), min_size=12, max_size=12),
                      label="opening balances")
    opening = [TransferFunds(transfer_id=f"open-{n}", user_id=user, asset=asset,
                             amount=whole * BASE_UNIT)
               for n, (whole, (user, asset)) in enumerate(zip(seeds, (
                   (user, asset) for user in ("u1", "u2", "u3") for asset in ASSETS),
                   strict=True)) if whole]
    for step in range(-len(opening), steps):
        cmd = (opening[step] if step < 0 else
               data.draw(funded_commands(ids, step, timestamp=1_000 * (step + 1)),
                         label=f"command {step}"))
        got = engine.submit(cmd)
        assert without_messages(got) == model.submit(cmd), f"after {cmd}"
        assert book_of(engine) == book_of(model), f"after {cmd}"
        balances.fold(got)
        balances.check(engine, model)
        for e in got.events:  # what the stream exercised (--hypothesis-show-statistics)
            statistic(type(e).__name__ + (f" {e.reason.value}" if hasattr(e, "reason") else ""))
        if got.seq:
            journal.append(journaled(got))
        ids.note(cmd, engine)

    restored = Exchange.restore(engine.capture(), FUNDED, funding=True)
    replayed = Exchange(FUNDED, funding=True)
    for batch in journal:
        replayed.apply(batch)
    for twin in (restored, replayed):
        assert twin.funds is not None
        assert engine.funds is not None
        assert twin.funds.capture() == engine.funds.capture()
        twin.check()
    for cmd in funded_sweeps(engine, 10**9):
        got = engine.submit(cmd)
        assert without_messages(got) == model.submit(cmd)
        assert restored.submit(cmd) == replayed.submit(cmd) == got
        balances.fold(got)
    balances.check(engine, model)
    assert not any(balances.held.values()), "a hold outlived its order"


# ---- the hold cases, one by one ------------------------------------------------------


def funded_exchange() -> Exchange:
    engine = Exchange(FUNDED, funding=True)
    for n, (user, asset, whole) in enumerate(
            [("buyer", "USD", 2_000), ("seller", "PLAIN", 100), ("buyer", "EUR", 25)]):
        engine.submit(TransferFunds(transfer_id=f"d{n}", user_id=user, asset=asset,
                                    amount=whole * BASE_UNIT))
    return engine


def balance(engine: Exchange, user: str, asset: str) -> list[int]:
    assert engine.funds is not None
    return engine.funds.balances.get((user, asset), [0, 0])


def test_an_unfunded_order_is_rejected_and_holds_nothing() -> None:
    engine = funded_exchange()
    batch = engine.submit(PlaceOrder(order_id="b", symbol="PLAIN", side=Side.BUY,
                                     quantity=1_000, price=10_000, user_id="buyer"))  # 100,000.00
    assert [type(e) for e in batch.events] == [OrderRejected]
    rejected = batch.events[0]
    assert isinstance(rejected, OrderRejected)
    assert rejected.reason is RejectReason.INSUFFICIENT_FUNDS
    assert balance(engine, "buyer", "USD") == [2_000 * BASE_UNIT, 0]


def test_a_buy_filled_below_its_limit_gets_the_difference_back() -> None:
    engine = funded_exchange()
    engine.submit(PlaceOrder(order_id="s", symbol="PLAIN", side=Side.SELL, quantity=10,
                             price=9_000, user_id="seller"))  # 90.00 a unit
    engine.submit(PlaceOrder(order_id="b", symbol="PLAIN", side=Side.BUY, quantity=10,
                             price=10_000, user_id="buyer"))  # up to 100.00
    # the buyer pays 900.00 plus the taker fee (25 bp: 2.25), the seller gets 900.00 less
    # the maker fee (10 bp: 0.90); nothing stays held
    assert balance(engine, "buyer", "USD") == [1_097_750_000, 0]
    assert balance(engine, "buyer", "PLAIN") == [10 * BASE_UNIT, 0]
    assert balance(engine, "seller", "USD") == [899_100_000, 0]
    assert balance(engine, "seller", "PLAIN") == [90 * BASE_UNIT, 0]
    assert engine.funds is not None
    assert engine.funds.fees["USD"] == 3_150_000


def test_a_market_buy_holds_exactly_what_it_pays() -> None:
    engine = funded_exchange()
    engine.submit(PlaceOrder(order_id="s1", symbol="PLAIN", side=Side.SELL, quantity=2,
                             price=10_000, user_id="seller"))
    engine.submit(PlaceOrder(order_id="s2", symbol="PLAIN", side=Side.SELL, quantity=5,
                             price=20_000, user_id="seller"))
    batch = engine.submit(PlaceOrder(
        order_id="m", symbol="PLAIN", side=Side.BUY, quantity=4, type=OrderType.MARKET,
        time_in_force=TimeInForce.IOC, user_id="buyer"))
    held = [e for e in batch.events if isinstance(e, FundsHeld)]
    # 2 x 100.00 + 2 x 200.00, plus 25 bp of each
    assert [e.amount for e in held] == [601_500_000]
    assert not [e for e in batch.events if isinstance(e, FundsReleased)]
    assert balance(engine, "buyer", "USD") == [1_398_500_000, 0]


def test_a_modify_up_needs_funds_and_a_modify_down_releases() -> None:
    engine = funded_exchange()  # the buyer has 25.00 EUR
    engine.submit(PlaceOrder(order_id="b", symbol="COARSE", side=Side.BUY, quantity=10,
                             price=100, user_id="buyer"))
    # 10 x (1.00 + 30 bp) EUR
    assert balance(engine, "buyer", "EUR") == [14_970_000, 10_030_000]
    refused = engine.submit(ModifyOrder(order_id="b", quantity=30))  # 20.06 more
    assert refused.seq == 0
    assert refused.events[0].reason is RejectReason.INSUFFICIENT_FUNDS  # type: ignore[union-attr]
    assert balance(engine, "buyer", "EUR") == [14_970_000, 10_030_000]
    batch = engine.submit(ModifyOrder(order_id="b", price=50))  # 10 x (0.50 + 30 bp)
    released = [e.amount for e in batch.events if isinstance(e, FundsReleased)]
    assert released == [10_030_000 - 5_015_000]
    assert balance(engine, "buyer", "EUR") == [19_985_000, 5_015_000]
    engine.check()


def test_a_repeated_transfer_id_changes_nothing() -> None:
    engine = funded_exchange()
    batch = engine.submit(TransferFunds(transfer_id="d0", user_id="buyer", asset="USD",
                                        amount=5 * BASE_UNIT))
    assert batch.seq == 0
    assert balance(engine, "buyer", "USD") == [2_000 * BASE_UNIT, 0]


def test_funding_off_refuses_transfers_and_makes_no_balance_events() -> None:
    engine = Exchange(FUNDED)
    batch = engine.submit(TransferFunds(transfer_id="d", user_id="u", asset="USD", amount=1))
    assert batch.seq == 0
    placed = engine.submit(PlaceOrder(order_id="b", symbol="PLAIN", side=Side.BUY,
                                      quantity=10, price=100, user_id="u"))
    assert engine.funds is None
    assert not [e for e in placed.events if isinstance(e, FundsHeld)]


# ---- long streams: deep books, many holds ----------------------------------------------


@pytest.mark.parametrize("seed", range(2))
def test_long_funded_streams_match_the_model(seed: int) -> None:
    """`long_stream`'s deep books with balances: users funded for most of their orders,
    deposits and withdrawals now and then; invariants checked every 50 commands."""
    engine, model, balances = Exchange(FUNDED, funding=True), FundedReference(FUNDED), Balances()
    rng = random.Random(seed)
    opening: list[Command] = [
        TransferFunds(transfer_id=f"open-{user}-{asset}", user_id=user, asset=asset,
                      amount=rng.choice([200, 2_000, 20_000]) * BASE_UNIT)
        for user in ("u1", "u2", "u3") for asset in ASSETS]
    stream = long_stream(rng, 2_000, engine)
    for n, cmd in enumerate(itertools.chain(opening, stream)):
        if n % 40 == 39:
            cmd = TransferFunds(transfer_id=f"t{n}", user_id=rng.choice(["u1", "u2", "u3"]),
                                asset=rng.choice(ASSETS), amount=rng.randint(1, 500) * BASE_UNIT,
                                withdrawal=rng.random() < 0.5, timestamp=n)
        got = engine.submit(cmd)
        assert without_messages(got) == model.submit(cmd), f"after {cmd}"
        balances.fold(got)
        if n % 50 == 0:
            assert book_of(engine) == book_of(model)
            balances.check(engine, model)
    balances.check(engine, model)
    assert sum(len(engine.levels(s, side)) for s in FUNDED for side in Side) >= 10
