"""The book's insides: levels hold exactly the live orders, the consistency check sees a
broken level, and the fast paths of the pre-trade checks (place, modify) agree with the
full checks."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.instruments import Instrument
from common.messages import (
    CancelOrder,
    CommandRejected,
    ModifyOrder,
    OrderAccepted,
    OrderCancelled,
    OrderModified,
    OrderRejected,
    OrderType,
    PlaceOrder,
    Side,
    Stp,
    TimeInForce,
    TradeExecuted,
)
from svc_orders.matching import Exchange
from svc_orders.matching.book import Book

SYM = "PLAIN"
COARSE = Instrument(symbol="COARSE", tick=5, lot=10, min_price=50, max_price=150,
                    min_quantity=10, max_quantity=1000)
INSTRUMENTS = {SYM: Instrument(symbol=SYM), COARSE.symbol: COARSE}
N = 2_000


def place(ex: Exchange, order_id: str, side: Side, quantity: int, price: int) -> None:
    ex.submit(PlaceOrder(order_id=order_id, symbol=SYM, side=side, quantity=quantity,
                         price=price))


def cancel(ex: Exchange, order_id: str) -> None:
    ex.submit(CancelOrder(order_id=order_id))


def book_of(ex: Exchange) -> Book:
    return ex.books[SYM]


def queued(book: Book) -> int:
    """Every order the book's levels hold."""
    return book.bids.order_count() + book.asks.order_count()


def test_cancelled_orders_leave_nothing_behind() -> None:
    ex = Exchange(INSTRUMENTS)
    for n in range(N):
        place(ex, f"c{n}", Side.BUY, 10, 100)
        cancel(ex, f"c{n}")
    book = book_of(ex)
    assert not book.bids.levels
    assert queued(book) == len(ex.orders) == 0
    ex.check()


def test_cancels_behind_a_live_order_leave_only_it() -> None:
    ex = Exchange(INSTRUMENTS)
    place(ex, "first", Side.SELL, 7, 105)
    for n in range(N):
        place(ex, f"c{n}", Side.SELL, 10, 105)
        cancel(ex, f"c{n}")
    level = book_of(ex).asks.levels[105]
    assert [order.order_id for order in level.values()] == ["first"]
    assert level.total == 7
    assert book_of(ex).depth(1) == ([], [(105, 7, 1)])
    ex.check()


def test_filled_and_modified_orders_leave_their_levels() -> None:
    ex = Exchange(INSTRUMENTS)
    for n in range(N):
        place(ex, f"m{n}", Side.SELL, 10, 105)
    place(ex, "taker", Side.BUY, 10 * (N - 3) + 4, 105)  # fills all but 3, one partly
    ex.submit(ModifyOrder(order_id=f"m{N - 1}", price=106))
    ex.submit(ModifyOrder(order_id=f"m{N - 2}", quantity=8))
    book = book_of(ex)
    assert {price: [(o.order_id, o.remaining) for o in level.values()]
            for price, level in book.asks.levels.items()} == {
        105: [(f"m{N - 3}", 6), (f"m{N - 2}", 8)], 106: [(f"m{N - 1}", 10)]}
    assert [level.total for level in book.asks.levels.values()] == [14, 10]
    assert queued(book) == len(ex.orders) == 3
    ex.check()


def test_a_level_emptied_by_matching_is_gone() -> None:
    ex = Exchange(INSTRUMENTS)
    place(ex, "a1", Side.SELL, 10, 105)
    place(ex, "a2", Side.SELL, 10, 106)
    place(ex, "t", Side.BUY, 15, 106)
    assert list(book_of(ex).asks.levels) == [106]
    assert book_of(ex).depth(5) == ([], [(106, 5, 1)])
    ex.check()


@pytest.mark.parametrize("damage", ["total", "empty level", "index", "heap"])
def test_check_sees_a_broken_level(damage: str) -> None:
    ex = Exchange(INSTRUMENTS)
    place(ex, "a1", Side.SELL, 10, 105)
    place(ex, "a2", Side.SELL, 10, 105)
    ex.check()
    ladder = book_of(ex).asks
    level = ladder.levels[105]
    if damage == "total":
        level.total += 1
    elif damage == "empty level":
        level.clear()
    elif damage == "index":
        del ex.orders["a2"]
    else:
        ladder.heap.clear()
    with pytest.raises(AssertionError):
        ex.check()


# ---- the pre-trade check: fast path against the full check -----------------------------

PLACE_ORDERS = st.builds(
    PlaceOrder,
    order_id=st.just("new"),
    symbol=st.sampled_from([SYM, COARSE.symbol]),
    side=st.sampled_from(list(Side)),
    quantity=st.sampled_from([0, 1, 5, 10, 15, 1000, 1010, 1_000_000, 1_000_001]),
    price=st.sampled_from([None, 0, 1, 45, 50, 95, 97, 100, 105, 150, 155, 99_999_999,
                           100_000_000]),
    type=st.sampled_from(list(OrderType)),
    time_in_force=st.sampled_from(list(TimeInForce)),
    post_only=st.booleans(),
    stp=st.sampled_from(list(Stp)),
    user_id=st.sampled_from([None, "u1", "u2"]),
)


@settings(max_examples=500, deadline=None)
@given(command=PLACE_ORDERS)
def test_place_refuses_exactly_what_the_full_check_refuses(command: PlaceOrder) -> None:
    """`place` skips `refusal` for plain limit orders: it must decide like `refusal`."""
    ex = Exchange(INSTRUMENTS)
    for symbol in INSTRUMENTS:
        for order_id, side, price in [("b", Side.BUY, 95), ("a", Side.SELL, 105)]:
            ex.submit(PlaceOrder(order_id=f"{symbol}{order_id}", symbol=symbol, side=side,
                                 quantity=10, price=price, user_id="u1"))
    book = ex.books[command.symbol]
    expected = book.refusal(command)  # the plain path under comparison
    first = ex.submit(command).events[0]
    refused = first.reason if isinstance(first, OrderRejected) else None
    assert refused == expected
    ex.check()


MODIFIES = st.builds(
    ModifyOrder,
    order_id=st.sampled_from(["PLAINb", "COARSEa"]),
    price=st.sampled_from([None, 0, 45, 50, 95, 97, 100, 105, 150, 155, 99_999_999,
                           100_000_000]),
    quantity=st.sampled_from([None, 0, 3, 5, 10, 15, 1000, 1010, 1_000_000, 1_000_001]),
)


@settings(max_examples=300, deadline=None)
@given(command=MODIFIES, post_only=st.booleans(), traded=st.sampled_from([0, 4]))
def test_modify_refuses_exactly_what_the_full_check_refuses(
    command: ModifyOrder, post_only: bool, traded: int,
) -> None:
    """`modify` skips `modify_error` for a new price alone: it must decide like it."""
    ex = Exchange(INSTRUMENTS)
    for symbol in INSTRUMENTS:
        for order_id, side, price in [("b", Side.BUY, 95), ("a", Side.SELL, 105)]:
            ex.submit(PlaceOrder(order_id=f"{symbol}{order_id}", symbol=symbol, side=side,
                                 quantity=10, price=price, post_only=post_only))
    if traded:  # a partly filled order: a new quantity must exceed what it traded
        ex.submit(PlaceOrder(order_id="t", symbol=SYM, side=Side.SELL, quantity=traded,
                             price=95))
    order = ex.orders[command.order_id]
    book = ex.books[order.placed.symbol]
    expected = book.modify_error(order, command.price, command.quantity)  # the plain path
    batch = ex.submit(command)
    first = batch.events[0]
    refused = first.reason if isinstance(first, CommandRejected) else None
    assert refused == (None if expected is None else expected[0])
    ex.check()


@pytest.mark.parametrize(("event", "fields"), [
    (OrderAccepted, ("seq", "order")),
    (TradeExecuted, ("seq", "timestamp", "symbol", "trade_no", "price", "quantity",
                     "buy_order_id", "sell_order_id", "aggressor_side", "buyer_user_id",
                     "seller_user_id")),
    (OrderCancelled, ("seq", "timestamp", "order_id", "quantity", "reason")),
    (OrderModified, ("seq", "timestamp", "order_id", "price", "quantity", "requeued")),
])
def test_events_keep_the_field_order_the_book_builds_them_in(
    event: type[msgspec.Struct], fields: tuple[str, ...],
) -> None:
    """The book passes these fields by position: a reordered field must fail here."""
    assert event.__struct_fields__ == fields
