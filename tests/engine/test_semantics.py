"""One short example per order rule, in the style of exchange-core's OrderBookBaseTest.

Every test starts from the same standard book, acts, and compares the aggregated book
(L2, `depth`) and the events. Each test runs against the engine and against the
reference model, so the model is held to hand-checked answers too.

The standard book on DEFAULT (tick 1, lot 1), seq 1-8 in this order:

    asks  108:  a4 30 (u1, DAY)
          106:  a3 200 (u3)
          105:  a1 100 (u1), a2 50 (u2)
    bids  100:  b1 100 (u1), b2 40 (u2)
           99:  b3 80 (u3, DAY)
           97:  b4 25 (u2)
"""

from __future__ import annotations

from typing import Protocol

import pytest

from common.instruments import DEFAULT_INSTRUMENT, Instrument
from common.messages import (
    CancelOrder,
    CancelReason,
    Command,
    CommandRejected,
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
    RejectReason,
    Side,
    Stp,
    TimeInForce,
    TradeExecuted,
)
from svc_orders.matching import Exchange
from tests.engine.reference import DepthLevel, ExchangeApi, Level, ReferenceExchange

SYM = "DEFAULT"
COARSE = Instrument(symbol="COARSE", tick=5, lot=10, min_price=50, max_price=150,
                    min_quantity=10, max_quantity=1000)
INSTRUMENTS = {SYM: DEFAULT_INSTRUMENT, COARSE.symbol: COARSE}

BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK, DAY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY
MARKET = OrderType.MARKET

SEED_BIDS: list[DepthLevel] = [(100, 140, 2), (99, 80, 1), (97, 25, 1)]
SEED_ASKS: list[DepthLevel] = [(105, 150, 2), (106, 200, 1), (108, 30, 1)]
SEEDED_SEQ = 8


class OrderView(Protocol):
    @property
    def quantity(self) -> int: ...
    @property
    def remaining(self) -> int: ...
    @property
    def traded(self) -> int: ...
    @property
    def cancelled(self) -> int: ...
    @property
    def price(self) -> int | None: ...


class AnyExchange(ExchangeApi, Protocol):
    def live_order(self, order_id: str) -> OrderView | None: ...


class Desk:
    """An exchange and a clock: commands with sensible defaults, one timestamp each."""

    def __init__(self, ex: AnyExchange) -> None:
        self.ex = ex
        self.now = 0

    def submit(self, command: Command) -> EventBatch:
        batch = self.ex.submit(command)
        for event in batch.events:
            if batch.seq:
                assert not isinstance(event, CommandRejected)
                assert event.seq == batch.seq
            else:
                assert isinstance(event, CommandRejected)
        return batch

    def tick(self) -> int:
        self.now += 1_000
        return self.now

    def place(self, order_id: str, side: Side, quantity: int, price: int | None = None, *,
              symbol: str = SYM, type: OrderType = OrderType.LIMIT, tif: TimeInForce = GTC,
              post_only: bool = False, stp: Stp = Stp.NONE, user: str | None = None,
              ) -> EventBatch:
        return self.submit(PlaceOrder(
            order_id=order_id, symbol=symbol, side=side, quantity=quantity, price=price,
            type=type, time_in_force=tif, post_only=post_only, stp=stp, user_id=user,
            timestamp=self.tick()))

    def cancel(self, order_id: str) -> EventBatch:
        return self.submit(CancelOrder(order_id=order_id, timestamp=self.tick()))

    def modify(self, order_id: str, price: int | None = None,
               quantity: int | None = None) -> EventBatch:
        return self.submit(ModifyOrder(order_id=order_id, price=price, quantity=quantity,
                                       timestamp=self.tick()))

    def expire(self, symbol: str = SYM) -> EventBatch:
        return self.submit(ExpireOrders(symbol=symbol, timestamp=self.tick()))

    def l2(self, symbol: str = SYM) -> tuple[list[DepthLevel], list[DepthLevel]]:
        return self.ex.depth(symbol, 10)

    def queue(self, side: Side, price: int, symbol: str = SYM) -> list[tuple[str, int]]:
        """(order_id, remaining) at one price level, in queue order."""
        return dict(self.ex.levels(symbol, side)).get(price, [])

    def counts(self, order_id: str) -> tuple[int, int, int, int]:
        """(quantity, remaining, traded, cancelled) of a live order."""
        order = self.ex.live_order(order_id)
        assert order is not None, f"{order_id} is not live"
        return order.quantity, order.remaining, order.traded, order.cancelled


def summary(batch: EventBatch) -> list[tuple[object, ...]]:
    """The events as short tuples; the fields that matter for each rule, readably."""
    out: list[tuple[object, ...]] = []
    for e in batch.events:
        match e:
            case OrderAccepted():
                out.append(("accepted", e.order.order_id))
            case OrderRejected():
                out.append(("rejected", e.order.order_id, e.reason))
            case TradeExecuted():
                out.append(("trade", e.price, e.quantity, e.buy_order_id, e.sell_order_id))
            case OrderCancelled():
                out.append(("cancelled", e.order_id, e.quantity, e.reason))
            case OrderModified():
                out.append(("modified", e.order_id, e.price, e.quantity, e.requeued))
            case OrderExpired():
                out.append(("expired", e.order_id, e.quantity))
            case CommandRejected():
                out.append(("refused", e.order_id, e.reason))
    return out


def accepted(order_id: str) -> tuple[object, ...]:
    return ("accepted", order_id)


def rejected(order_id: str, reason: RejectReason) -> tuple[object, ...]:
    return ("rejected", order_id, reason)


def trade(price: int, quantity: int, buy: str, sell: str) -> tuple[object, ...]:
    return ("trade", price, quantity, buy, sell)


def cancelled(order_id: str, quantity: int, reason: CancelReason) -> tuple[object, ...]:
    return ("cancelled", order_id, quantity, reason)


def modified(order_id: str, price: int, quantity: int, requeued: bool) -> tuple[object, ...]:
    return ("modified", order_id, price, quantity, requeued)


def refused(order_id: str, reason: RejectReason) -> tuple[object, ...]:
    return ("refused", order_id, reason)


@pytest.fixture(params=["engine", "reference"])
def desk(request: pytest.FixtureRequest) -> Desk:
    """The standard book, on the engine or on the reference model."""
    ex: AnyExchange = (Exchange(INSTRUMENTS) if request.param == "engine"
                       else ReferenceExchange(INSTRUMENTS))
    d = Desk(ex)
    for order_id, side, quantity, price, user, tif in [
        ("a1", SELL, 100, 105, "u1", GTC), ("a2", SELL, 50, 105, "u2", GTC),
        ("a3", SELL, 200, 106, "u3", GTC), ("a4", SELL, 30, 108, "u1", DAY),
        ("b1", BUY, 100, 100, "u1", GTC), ("b2", BUY, 40, 100, "u2", GTC),
        ("b3", BUY, 80, 99, "u3", DAY), ("b4", BUY, 25, 97, "u2", GTC),
    ]:
        assert summary(d.place(order_id, side, quantity, price, user=user, tif=tif)) == [
            accepted(order_id)]
    return d


# ---- the standard book, price-time priority, maker price -----------------------------


def test_standard_book(desk: Desk) -> None:
    assert desk.l2() == (SEED_BIDS, SEED_ASKS)
    assert desk.ex.best(SYM) == (100, 105)
    assert desk.ex.seq(SYM) == SEEDED_SEQ
    assert desk.ex.seq(COARSE.symbol) == 0
    assert desk.queue(SELL, 105) == [("a1", 100), ("a2", 50)]
    assert desk.queue(BUY, 100) == [("b1", 100), ("b2", 40)]


def test_price_time_priority_and_maker_price(desk: Desk) -> None:
    batch = desk.place("t", BUY, 180, 107, user="u9")
    assert summary(batch) == [accepted("t"), trade(105, 100, "t", "a1"),
                              trade(105, 50, "t", "a2"), trade(106, 30, "t", "a3")]
    assert desk.l2() == (SEED_BIDS, [(106, 170, 1), (108, 30, 1)])
    first = batch.events[1]
    assert first == TradeExecuted(
        seq=SEEDED_SEQ + 1, timestamp=desk.now, symbol=SYM, trade_no=1, price=105,
        quantity=100, buy_order_id="t", sell_order_id="a1", aggressor_side=BUY,
        buyer_user_id="u9", seller_user_id="u1")
    assert [e.trade_no for e in batch.events if isinstance(e, TradeExecuted)] == [1, 2, 3]


def test_accepted_copies_the_order(desk: Desk) -> None:
    cmd = PlaceOrder(order_id="t", symbol=SYM, side=BUY, quantity=5, price=101, stp=Stp.NONE,
                     user_id="u9", client_order_id="mine", timestamp=desk.tick())
    assert desk.submit(cmd) == EventBatch(symbol=SYM, seq=SEEDED_SEQ + 1,
                                          events=[OrderAccepted(seq=SEEDED_SEQ + 1, order=cmd)])


def test_same_price_joins_the_back_of_the_level(desk: Desk) -> None:
    desk.place("b5", BUY, 10, 100)
    assert desk.queue(BUY, 100) == [("b1", 100), ("b2", 40), ("b5", 10)]
    batch = desk.place("t", SELL, 145, 100)
    assert summary(batch) == [accepted("t"), trade(100, 100, "b1", "t"),
                              trade(100, 40, "b2", "t"), trade(100, 5, "b5", "t")]
    assert all(e.aggressor_side is SELL for e in batch.events if isinstance(e, TradeExecuted))
    assert desk.l2() == ([(100, 5, 1), (99, 80, 1), (97, 25, 1)], SEED_ASKS)


def test_partial_fill_rests_the_remainder(desk: Desk) -> None:
    assert summary(desk.place("t", BUY, 200, 105)) == [
        accepted("t"), trade(105, 100, "t", "a1"), trade(105, 50, "t", "a2")]
    assert desk.l2() == ([(105, 50, 1), *SEED_BIDS], [(106, 200, 1), (108, 30, 1)])
    assert desk.counts("t") == (200, 50, 150, 0)


def test_partially_filled_maker_keeps_its_place(desk: Desk) -> None:
    desk.place("t", BUY, 30, 105)
    assert desk.queue(SELL, 105) == [("a1", 70), ("a2", 50)]
    assert desk.counts("a1") == (100, 70, 30, 0)


def test_sell_sweeps_bids_down_to_its_limit(desk: Desk) -> None:
    assert summary(desk.place("t", SELL, 150, 99)) == [
        accepted("t"), trade(100, 100, "b1", "t"), trade(100, 40, "b2", "t"),
        trade(99, 10, "b3", "t")]
    assert desk.l2() == ([(99, 70, 1), (97, 25, 1)], SEED_ASKS)


def test_limit_that_does_not_cross_rests(desk: Desk) -> None:
    assert summary(desk.place("t", SELL, 10, 101)) == [accepted("t")]
    assert desk.l2() == (SEED_BIDS, [(101, 10, 1), *SEED_ASKS])


# ---- IOC, FOK, market -----------------------------------------------------------------


def test_ioc_cancels_the_remainder(desk: Desk) -> None:
    assert summary(desk.place("t", BUY, 200, 105, tif=IOC)) == [
        accepted("t"), trade(105, 100, "t", "a1"), trade(105, 50, "t", "a2"),
        cancelled("t", 50, CancelReason.IMMEDIATE_OR_CANCEL)]
    assert desk.l2() == (SEED_BIDS, [(106, 200, 1), (108, 30, 1)])


def test_ioc_that_does_not_cross_is_cancelled_whole(desk: Desk) -> None:
    assert summary(desk.place("t", BUY, 10, 101, tif=IOC)) == [
        accepted("t"), cancelled("t", 10, CancelReason.IMMEDIATE_OR_CANCEL)]
    assert desk.l2() == (SEED_BIDS, SEED_ASKS)


def test_fok_fills_completely(desk: Desk) -> None:
    assert summary(desk.place("t", BUY, 180, 106, tif=FOK)) == [
        accepted("t"), trade(105, 100, "t", "a1"), trade(105, 50, "t", "a2"),
        trade(106, 30, "t", "a3")]
    assert desk.l2() == (SEED_BIDS, [(106, 170, 1), (108, 30, 1)])


def test_fok_not_fillable_does_nothing(desk: Desk) -> None:
    # 350 is available up to 106, 380 up to 108: 351 at 106 is one too many.
    batch = desk.place("t", BUY, 351, 106, tif=FOK)
    assert summary(batch) == [rejected("t", RejectReason.FOK_NOT_FILLABLE)]
    assert batch.seq == SEEDED_SEQ + 1  # the rejected order is recorded
    assert desk.l2() == (SEED_BIDS, SEED_ASKS)
    assert desk.ex.live_order("t") is None
    # no trade number was used
    trades = [e for e in desk.place("t2", BUY, 1, 105).events if isinstance(e, TradeExecuted)]
    assert [e.trade_no for e in trades] == [1]


def test_fok_counts_no_self_trade_makers(desk: Desk) -> None:
    # u1 with CANCEL_OLDEST: a1 (u1) would be cancelled, so only a2's 50 counts at 105.
    assert summary(desk.place("t", BUY, 60, 105, tif=FOK, stp=Stp.CANCEL_OLDEST,
                              user="u1")) == [rejected("t", RejectReason.FOK_NOT_FILLABLE)]
    assert desk.queue(SELL, 105) == [("a1", 100), ("a2", 50)]  # no STP side effect
    # u1 with CANCEL_NEWEST: matching would stop at a1, so nothing is fillable.
    assert summary(desk.place("t2", BUY, 1, 105, tif=FOK, stp=Stp.CANCEL_NEWEST,
                              user="u1")) == [rejected("t2", RejectReason.FOK_NOT_FILLABLE)]
    assert summary(desk.place("t3", BUY, 1, 105, tif=FOK, stp=Stp.CANCEL_BOTH,
                              user="u1")) == [rejected("t3", RejectReason.FOK_NOT_FILLABLE)]
    assert desk.l2() == (SEED_BIDS, SEED_ASKS)


def test_fok_with_cancel_oldest_fills_past_its_own_orders(desk: Desk) -> None:
    assert summary(desk.place("t", BUY, 50, 105, tif=FOK, stp=Stp.CANCEL_OLDEST,
                              user="u1")) == [
        accepted("t"), cancelled("a1", 100, CancelReason.SELF_TRADE),
        trade(105, 50, "t", "a2")]
    assert desk.l2() == (SEED_BIDS, [(106, 200, 1), (108, 30, 1)])


def test_market_sweeps_then_cancels_for_no_liquidity(desk: Desk) -> None:
    assert summary(desk.place("t", BUY, 400, type=MARKET, tif=IOC)) == [
        accepted("t"), trade(105, 100, "t", "a1"), trade(105, 50, "t", "a2"),
        trade(106, 200, "t", "a3"), trade(108, 30, "t", "a4"),
        cancelled("t", 20, CancelReason.NO_LIQUIDITY)]
    assert desk.l2() == (SEED_BIDS, [])
    assert desk.ex.best(SYM) == (100, None)
    assert summary(desk.place("t2", BUY, 5, type=MARKET, tif=IOC)) == [
        accepted("t2"), cancelled("t2", 5, CancelReason.NO_LIQUIDITY)]


def test_market_filled_exactly_leaves_no_cancel(desk: Desk) -> None:
    assert summary(desk.place("t", SELL, 140, type=MARKET, tif=IOC)) == [
        accepted("t"), trade(100, 100, "b1", "t"), trade(100, 40, "b2", "t")]
    assert desk.l2() == ([(99, 80, 1), (97, 25, 1)], SEED_ASKS)


def test_market_fok(desk: Desk) -> None:
    assert summary(desk.place("t", SELL, 246, type=MARKET, tif=FOK)) == [
        rejected("t", RejectReason.FOK_NOT_FILLABLE)]
    assert desk.l2() == (SEED_BIDS, SEED_ASKS)
    assert summary(desk.place("t2", SELL, 245, type=MARKET, tif=FOK)) == [
        accepted("t2"), trade(100, 100, "b1", "t2"), trade(100, 40, "b2", "t2"),
        trade(99, 80, "b3", "t2"), trade(97, 25, "b4", "t2")]
    assert desk.l2() == ([], SEED_ASKS)


@pytest.mark.parametrize(("price", "order_type", "tif", "post_only"), [
    (None, OrderType.LIMIT, GTC, False),  # limit without a price
    (105, MARKET, IOC, False),  # market with a price
    (None, MARKET, GTC, False),  # market must be IOC or FOK
    (None, MARKET, DAY, False),
    (None, MARKET, IOC, True),  # market cannot be post-only
])
def test_invalid_order(desk: Desk, price: int | None, order_type: OrderType, tif: TimeInForce,
                       post_only: bool) -> None:
    batch = desk.place("t", BUY, 10, price, type=order_type, tif=tif, post_only=post_only)
    assert summary(batch) == [rejected("t", RejectReason.INVALID_ORDER)]
    assert batch.seq == SEEDED_SEQ + 1
    assert desk.l2() == (SEED_BIDS, SEED_ASKS)


# ---- post-only ---------------------------------------------------------------------


def test_post_only_rejected_when_it_would_take(desk: Desk) -> None:
    assert summary(desk.place("t", BUY, 10, 105, post_only=True)) == [
        rejected("t", RejectReason.POST_ONLY_WOULD_CROSS)]
    assert summary(desk.place("t2", SELL, 10, 100, post_only=True)) == [
        rejected("t2", RejectReason.POST_ONLY_WOULD_CROSS)]
    assert desk.l2() == (SEED_BIDS, SEED_ASKS)


def test_post_only_rests_when_it_does_not_cross(desk: Desk) -> None:
    assert summary(desk.place("t", BUY, 10, 101, post_only=True)) == [accepted("t")]
    assert summary(desk.place("t2", SELL, 10, 104, post_only=True)) == [accepted("t2")]
    assert desk.l2() == ([(101, 10, 1), *SEED_BIDS], [(104, 10, 1), *SEED_ASKS])
    # one tick inside the spread is still passive; at the opposite best it is not
    assert summary(desk.place("t3", BUY, 10, 103, post_only=True)) == [accepted("t3")]
    assert summary(desk.place("t4", SELL, 10, 103, post_only=True)) == [
        rejected("t4", RejectReason.POST_ONLY_WOULD_CROSS)]


# ---- self-trade prevention -------------------------------------------------------------


def test_stp_none_trades_with_itself(desk: Desk) -> None:
    assert summary(desk.place("t", BUY, 100, 105, user="u1")) == [
        accepted("t"), trade(105, 100, "t", "a1")]


def test_stp_cancel_newest_cancels_the_taker(desk: Desk) -> None:
    assert summary(desk.place("t", BUY, 120, 106, user="u1", stp=Stp.CANCEL_NEWEST)) == [
        accepted("t"), cancelled("t", 120, CancelReason.SELF_TRADE)]
    assert desk.l2() == (SEED_BIDS, SEED_ASKS)


def test_stp_cancel_newest_after_some_trades(desk: Desk) -> None:
    assert summary(desk.place("t", BUY, 300, 106, user="u3", stp=Stp.CANCEL_NEWEST)) == [
        accepted("t"), trade(105, 100, "t", "a1"), trade(105, 50, "t", "a2"),
        cancelled("t", 150, CancelReason.SELF_TRADE)]
    assert desk.l2() == (SEED_BIDS, [(106, 200, 1), (108, 30, 1)])


def test_stp_cancel_oldest_cancels_the_maker_and_goes_on(desk: Desk) -> None:
    assert summary(desk.place("t", BUY, 120, 105, user="u1", stp=Stp.CANCEL_OLDEST)) == [
        accepted("t"), cancelled("a1", 100, CancelReason.SELF_TRADE),
        trade(105, 50, "t", "a2")]
    assert desk.l2() == ([(105, 70, 1), *SEED_BIDS], [(106, 200, 1), (108, 30, 1)])


def test_stp_cancel_both(desk: Desk) -> None:
    assert summary(desk.place("t", BUY, 120, 105, user="u1", stp=Stp.CANCEL_BOTH)) == [
        accepted("t"), cancelled("a1", 100, CancelReason.SELF_TRADE),
        cancelled("t", 120, CancelReason.SELF_TRADE)]
    assert desk.l2() == (SEED_BIDS, [(105, 50, 1), (106, 200, 1), (108, 30, 1)])


def test_stp_is_the_takers_choice(desk: Desk) -> None:
    # the maker's own stp does not matter: a taker with stp none trades with it
    desk.place("m", SELL, 5, 104, user="u5", stp=Stp.CANCEL_BOTH)
    assert summary(desk.place("t", BUY, 5, 104, user="u5")) == [
        accepted("t"), trade(104, 5, "t", "m")]


def test_stp_needs_a_user(desk: Desk) -> None:
    desk.place("m", SELL, 5, 104)
    assert summary(desk.place("t", BUY, 5, 104, stp=Stp.CANCEL_BOTH)) == [
        accepted("t"), trade(104, 5, "t", "m")]


# ---- cancel ----------------------------------------------------------------------------


def test_cancel_live_order(desk: Desk) -> None:
    batch = desk.cancel("b1")
    assert batch == EventBatch(symbol=SYM, seq=SEEDED_SEQ + 1, events=[OrderCancelled(
        seq=SEEDED_SEQ + 1, timestamp=desk.now, order_id="b1", quantity=100,
        reason=CancelReason.USER)])
    assert desk.l2() == ([(100, 40, 1), (99, 80, 1), (97, 25, 1)], SEED_ASKS)
    assert desk.ex.live_order("b1") is None


def test_cancel_partially_filled_order_cancels_the_remaining(desk: Desk) -> None:
    desk.place("t", BUY, 30, 105)
    assert summary(desk.cancel("a1")) == [cancelled("a1", 70, CancelReason.USER)]


@pytest.mark.parametrize("order_id", ["never-issued", "dead"])
def test_cancel_not_live_changes_nothing(desk: Desk, order_id: str) -> None:
    if order_id == "dead":
        desk.cancel("b4")
        order_id = "b4"
    seq = desk.ex.seq(SYM)
    batch = desk.cancel(order_id)
    assert (batch.symbol, batch.seq) == ("", 0)
    assert summary(batch) == [refused(order_id, RejectReason.ORDER_NOT_LIVE)]
    assert desk.ex.seq(SYM) == seq


def test_cancel_filled_order_is_refused(desk: Desk) -> None:
    desk.place("t", BUY, 100, 105)  # fills a1
    assert summary(desk.cancel("a1")) == [refused("a1", RejectReason.ORDER_NOT_LIVE)]
    assert summary(desk.cancel("t")) == [refused("t", RejectReason.ORDER_NOT_LIVE)]


# ---- modify ----------------------------------------------------------------------------


def test_modify_price_moves_the_order(desk: Desk) -> None:
    assert summary(desk.modify("b4", price=101)) == [modified("b4", 101, 25, True)]
    assert desk.l2() == ([(101, 25, 1), (100, 140, 2), (99, 80, 1)], SEED_ASKS)


def test_modify_to_the_same_price_loses_priority(desk: Desk) -> None:
    assert summary(desk.modify("b1", price=100)) == [modified("b1", 100, 100, True)]
    assert desk.queue(BUY, 100) == [("b2", 40), ("b1", 100)]


def test_modify_price_can_trade_at_once(desk: Desk) -> None:
    assert summary(desk.modify("b2", price=105)) == [
        modified("b2", 105, 40, True), trade(105, 40, "b2", "a1")]
    assert desk.l2() == ([(100, 100, 1), (99, 80, 1), (97, 25, 1)],
                         [(105, 110, 2), (106, 200, 1), (108, 30, 1)])
    # a modified taker is the aggressor
    batch = desk.modify("b1", price=106)
    assert summary(batch) == [modified("b1", 106, 100, True), trade(105, 60, "b1", "a1"),
                              trade(105, 40, "b1", "a2")]
    assert all(e.aggressor_side is BUY for e in batch.events if isinstance(e, TradeExecuted))


def test_modify_price_remainder_rests_at_the_new_price(desk: Desk) -> None:
    desk.place("b5", BUY, 5, 105, tif=IOC)  # takes 5 of a1 (and nothing rests)
    assert summary(desk.modify("b1", price=105)) == [
        modified("b1", 105, 100, True), trade(105, 95, "b1", "a1"), trade(105, 5, "b1", "a2")]
    desk.place("b6", BUY, 10, 104)
    assert summary(desk.modify("b2", price=106, quantity=300)) == [
        modified("b2", 106, 300, True), trade(105, 45, "b2", "a2"),
        trade(106, 200, "b2", "a3")]
    assert desk.l2() == ([(106, 55, 1), (104, 10, 1), (99, 80, 1), (97, 25, 1)],
                         [(108, 30, 1)])
    assert desk.counts("b2") == (300, 55, 245, 0)


def test_modify_price_applies_the_orders_stp(desk: Desk) -> None:
    desk.place("s", SELL, 10, 104, user="u2", stp=Stp.CANCEL_OLDEST)
    assert summary(desk.modify("s", price=100)) == [
        modified("s", 100, 10, True), trade(100, 10, "b1", "s")]
    desk.place("s2", SELL, 10, 104, user="u1", stp=Stp.CANCEL_OLDEST)
    assert summary(desk.modify("s2", price=100)) == [
        modified("s2", 100, 10, True), cancelled("b1", 90, CancelReason.SELF_TRADE),
        trade(100, 10, "b2", "s2")]


def test_modify_quantity_down_keeps_priority(desk: Desk) -> None:
    assert summary(desk.modify("b1", quantity=60)) == [modified("b1", 100, 60, False)]
    assert desk.queue(BUY, 100) == [("b1", 60), ("b2", 40)]
    assert summary(desk.modify("b1", quantity=60)) == [modified("b1", 100, 60, False)]
    assert desk.queue(BUY, 100) == [("b1", 60), ("b2", 40)]


def test_modify_quantity_up_loses_priority(desk: Desk) -> None:
    assert summary(desk.modify("b1", quantity=150)) == [modified("b1", 100, 150, True)]
    assert desk.queue(BUY, 100) == [("b2", 40), ("b1", 150)]
    assert desk.l2() == ([(100, 190, 2), (99, 80, 1), (97, 25, 1)], SEED_ASKS)


def test_modify_quantity_is_the_new_total(desk: Desk) -> None:
    desk.place("t", BUY, 30, 105)  # a1 traded 30
    assert summary(desk.modify("a1", quantity=50)) == [modified("a1", 105, 50, False)]
    assert desk.queue(SELL, 105) == [("a1", 20), ("a2", 50)]
    assert desk.counts("a1") == (50, 20, 30, 0)


@pytest.mark.parametrize("quantity", [30, 29, 0])
def test_modify_quantity_not_above_traded_is_refused(desk: Desk, quantity: int) -> None:
    desk.place("t", BUY, 30, 105)  # a1 traded 30
    batch = desk.modify("a1", quantity=quantity)
    assert (batch.symbol, batch.seq) == (SYM, 0)
    assert summary(batch) == [refused("a1", RejectReason.INVALID_QUANTITY)]
    assert desk.counts("a1") == (100, 70, 30, 0)
    assert summary(desk.modify("a1", quantity=31)) == [modified("a1", 105, 31, False)]
    assert desk.counts("a1") == (31, 1, 30, 0)


def test_modify_refusals(desk: Desk) -> None:
    def refusal(batch: EventBatch) -> tuple[str, int, list[tuple[object, ...]]]:
        return batch.symbol, batch.seq, summary(batch)

    assert refusal(desk.modify("nope", price=101)) == (
        "", 0, [refused("nope", RejectReason.ORDER_NOT_LIVE)])
    assert refusal(desk.modify("b1")) == (SYM, 0, [refused("b1", RejectReason.INVALID_ORDER)])
    assert refusal(desk.modify("b1", price=0)) == (
        SYM, 0, [refused("b1", RejectReason.INVALID_PRICE)])
    assert refusal(desk.modify("b1", quantity=-5)) == (
        SYM, 0, [refused("b1", RejectReason.INVALID_QUANTITY)])
    assert refusal(desk.modify("b1", quantity=1_000_001)) == (
        SYM, 0, [refused("b1", RejectReason.INVALID_QUANTITY)])
    # price is checked before quantity
    assert refusal(desk.modify("b1", price=-1, quantity=-1)) == (
        SYM, 0, [refused("b1", RejectReason.INVALID_PRICE)])
    assert desk.ex.seq(SYM) == SEEDED_SEQ
    assert desk.l2() == (SEED_BIDS, SEED_ASKS)


def test_modify_post_only_that_would_cross_is_refused(desk: Desk) -> None:
    desk.place("p", BUY, 10, 104, post_only=True)
    assert summary(desk.modify("p", price=105)) == [
        refused("p", RejectReason.POST_ONLY_WOULD_CROSS)]
    assert summary(desk.modify("p", price=103)) == [modified("p", 103, 10, True)]
    assert desk.l2() == ([(103, 10, 1), *SEED_BIDS], SEED_ASKS)


def test_modify_refusal_on_a_coarse_instrument(desk: Desk) -> None:
    desk.place("c", BUY, 20, 100, symbol=COARSE.symbol)
    for price in (101, 45, 155):  # off tick, below and above the bounds
        batch = desk.modify("c", price=price)
        assert (batch.symbol, summary(batch)) == (
            COARSE.symbol, [refused("c", RejectReason.INVALID_PRICE)])
    for quantity in (25, 1010):  # off lot, too big
        assert summary(desk.modify("c", quantity=quantity)) == [
            refused("c", RejectReason.INVALID_QUANTITY)]
    assert summary(desk.modify("c", price=105, quantity=30)) == [modified("c", 105, 30, True)]


# ---- DAY expiry --------------------------------------------------------------------


def test_expire_day_orders(desk: Desk) -> None:
    desk.place("b5", BUY, 7, 101, tif=DAY)
    desk.place("b6", BUY, 8, 99, tif=DAY)
    desk.place("c", BUY, 10, 100, symbol=COARSE.symbol, tif=DAY)
    batch = desk.expire()
    assert batch.seq == SEEDED_SEQ + 3
    assert batch.events == [
        OrderExpired(seq=batch.seq, timestamp=desk.now, order_id=order_id, quantity=quantity)
        for order_id, quantity in [("b5", 7), ("b3", 80), ("b6", 8), ("a4", 30)]]
    assert desk.l2() == ([(100, 140, 2), (97, 25, 1)], [(105, 150, 2), (106, 200, 1)])
    assert desk.l2(COARSE.symbol) == ([(100, 10, 1)], [])  # other instruments untouched
    assert desk.expire() == EventBatch(symbol=SYM, seq=0, events=[])
    assert desk.ex.seq(SYM) == SEEDED_SEQ + 3


def test_expire_partially_filled_day_order_expires_the_remaining(desk: Desk) -> None:
    desk.place("t", SELL, 30, 99)  # b1 takes it all
    desk.place("t2", SELL, 150, 99)  # b1 70, b2 40, b3 40
    assert summary(desk.expire()) == [("expired", "b3", 40), ("expired", "a4", 30)]


def test_expire_unknown_symbol(desk: Desk) -> None:
    batch = desk.expire("NOPE")
    assert batch.seq == 0
    assert summary(batch) == [refused("", RejectReason.UNKNOWN_SYMBOL)]


# ---- validation of new orders ---------------------------------------------------------


@pytest.mark.parametrize(("quantity", "price", "reason"), [
    (20, 101, RejectReason.INVALID_PRICE),  # off tick (5)
    (20, 45, RejectReason.INVALID_PRICE),  # below min_price 50
    (20, 155, RejectReason.INVALID_PRICE),  # above max_price 150
    (20, 0, RejectReason.INVALID_PRICE),
    (20, -5, RejectReason.INVALID_PRICE),
    (15, 100, RejectReason.INVALID_QUANTITY),  # off lot (10)
    (0, 100, RejectReason.INVALID_QUANTITY),
    (-10, 100, RejectReason.INVALID_QUANTITY),
    (1010, 100, RejectReason.INVALID_QUANTITY),  # above max_quantity 1000
    (15, 101, RejectReason.INVALID_QUANTITY),  # quantity is checked before price
])
def test_invalid_quantity_and_price(desk: Desk, quantity: int, price: int,
                                    reason: RejectReason) -> None:
    cmd = PlaceOrder(order_id="c", symbol=COARSE.symbol, side=BUY, quantity=quantity,
                     price=price, timestamp=desk.tick())
    assert desk.submit(cmd) == EventBatch(symbol=COARSE.symbol, seq=1, events=[
        OrderRejected(seq=1, order=cmd, reason=reason)])
    assert desk.l2(COARSE.symbol) == ([], [])
    assert desk.ex.live_order("c") is None


def test_valid_bounds_on_a_coarse_instrument(desk: Desk) -> None:
    assert summary(desk.place("lo", BUY, 10, 50, symbol=COARSE.symbol)) == [accepted("lo")]
    assert summary(desk.place("hi", SELL, 1000, 150, symbol=COARSE.symbol)) == [
        accepted("hi")]
    assert desk.l2(COARSE.symbol) == ([(50, 10, 1)], [(150, 1000, 1)])


def test_unknown_symbol(desk: Desk) -> None:
    batch = desk.place("x", BUY, 10, 100, symbol="NOPE")
    assert (batch.symbol, batch.seq) == ("NOPE", 0)
    assert summary(batch) == [refused("x", RejectReason.UNKNOWN_SYMBOL)]


def test_duplicate_live_order_id(desk: Desk) -> None:
    batch = desk.place("b1", SELL, 10, 120)
    assert (batch.symbol, batch.seq) == (SYM, 0)
    assert summary(batch) == [refused("b1", RejectReason.DUPLICATE_ORDER_ID)]
    # live in another instrument counts too
    batch = desk.place("b1", BUY, 10, 100, symbol=COARSE.symbol)
    assert (batch.symbol, batch.seq) == (COARSE.symbol, 0)
    assert summary(batch) == [refused("b1", RejectReason.DUPLICATE_ORDER_ID)]
    assert desk.l2() == (SEED_BIDS, SEED_ASKS)


def test_dead_order_id_may_be_used_again(desk: Desk) -> None:
    desk.cancel("b4")
    assert summary(desk.place("b4", BUY, 5, 96)) == [accepted("b4")]
    assert desk.counts("b4") == (5, 5, 0, 0)


# ---- sequence numbers and trade numbers ------------------------------------------------


def test_seq_is_gap_free_per_instrument(desk: Desk) -> None:
    batches = [
        desk.place("t1", BUY, 10, 105),  # trade: 9
        desk.cancel("nope"),  # refused: 0
        desk.place("c1", BUY, 10, 100, symbol=COARSE.symbol),  # COARSE 1
        desk.place("t2", BUY, 10, 101, tif=FOK),  # rejected order: 10
        desk.modify("b1"),  # refused: 0
        desk.modify("b1", quantity=90),  # 11
        desk.place("t3", BUY, 10, symbol="NOPE"),  # refused: 0
        desk.place("c2", SELL, 10, 100, symbol=COARSE.symbol),  # COARSE 2
        desk.expire(),  # 12
        desk.expire(),  # nothing to expire: 0
        desk.cancel("b1"),  # 13
    ]
    assert [(b.symbol, b.seq) for b in batches] == [
        (SYM, 9), ("", 0), (COARSE.symbol, 1), (SYM, 10), (SYM, 0), (SYM, 11), ("NOPE", 0),
        (COARSE.symbol, 2), (SYM, 12), (SYM, 0), (SYM, 13)]
    assert (desk.ex.seq(SYM), desk.ex.seq(COARSE.symbol)) == (13, 2)


def test_trade_numbers_are_per_instrument(desk: Desk) -> None:
    desk.place("c1", SELL, 10, 100, symbol=COARSE.symbol)
    numbers = [(e.symbol, e.trade_no) for batch in (
        desk.place("t1", BUY, 120, 105),
        desk.place("c2", BUY, 10, 100, symbol=COARSE.symbol),
        desk.place("t2", SELL, 150, 99),
    ) for e in batch.events if isinstance(e, TradeExecuted)]
    assert numbers == [(SYM, 1), (SYM, 2), (COARSE.symbol, 1), (SYM, 3), (SYM, 4), (SYM, 5)]


# ---- captured state and replay (engine only) ---------------------------------------------


def test_state_round_trip_and_replay() -> None:
    engine = Exchange(INSTRUMENTS)
    d = Desk(engine)
    journal: list[EventBatch] = []
    for batch in [
        d.place("a1", SELL, 100, 105, user="u1"), d.place("a2", SELL, 50, 105, tif=DAY),
        d.place("b1", BUY, 100, 100), d.place("b2", BUY, 40, 100, tif=DAY),
        d.place("t", BUY, 30, 105), d.modify("b1", quantity=150), d.modify("b2", price=101),
        d.place("c1", SELL, 20, 100, symbol=COARSE.symbol), d.cancel("nope"),
    ]:
        if batch.seq:
            journal.append(batch)
    restored = Exchange.restore(engine.capture(), INSTRUMENTS)
    replayed = Exchange(INSTRUMENTS)
    for batch in journal:
        replayed.apply(batch)

    def state(ex: Exchange) -> list[tuple[int, list[Level], list[Level]]]:
        return [(ex.seq(s), ex.levels(s, BUY), ex.levels(s, SELL)) for s in INSTRUMENTS]

    assert state(restored) == state(engine)
    assert state(replayed) == state(engine)
    assert state(engine)[0] == (7, [(101, [("b2", 40)]), (100, [("b1", 150)])],
                                [(105, [("a1", 70), ("a2", 50)])])
    # the copies continue exactly like the original: same seq, trade numbers, priority
    more: list[Command] = [
        PlaceOrder(order_id="t2", symbol=SYM, side=BUY, quantity=200, price=105,
                   user_id="u1", stp=Stp.CANCEL_OLDEST, timestamp=d.tick()),
        ExpireOrders(symbol=SYM, timestamp=d.tick()),
        PlaceOrder(order_id="t3", symbol=SYM, side=SELL, quantity=500, type=MARKET,
                   time_in_force=IOC, timestamp=d.tick()),
        PlaceOrder(order_id="c2", symbol=COARSE.symbol, side=BUY, quantity=10,
                   type=MARKET, time_in_force=IOC, timestamp=d.tick()),
    ]
    for cmd in more:
        got = engine.submit(cmd)
        assert restored.submit(cmd) == got
        assert replayed.submit(cmd) == got
    assert state(restored) == state(engine) == state(replayed)
