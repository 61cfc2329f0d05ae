"""After a fault: does what the services show agree with what the load was told?

Checked once the load has stopped and the projection has caught up with the engine:

- every acknowledged order reads back from svc_orders as it was answered, except for
  what later orders may change (fills: its traded quantity only grows);
- the projected trades are exactly the fills of the acknowledged orders plus those of
  the orders whose outcome was open and which the journal did store (found by their
  `client_order_id`): no trade lost, none invented, none twice (trade_no gap-free);
- the projected orders are exactly those orders, each once, each as svc_orders shows
  it, and each order's traded quantity is the sum of its projected trades;
- the engine's book equals the aggregation of the live projected orders, and
  svc_trades' GET /orderbook/ shows that book too;
- a reference engine (`tests.engine.reference`) fed the commands of those orders, as
  the load sent them, in the order the journal (the `EXCHANGE` stream, read message by
  message) holds them, ends with the engine's book: the same levels, the same resting
  orders with the same remaining quantities as svc_orders shows, the same seq, and it
  made exactly the projected trades; the journal holds no other command;
- a WebSocket client connected throughout received every projected trade once, in
  order (trade_no gap-free).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import aiohttp
import msgspec
import nats

from common import subjects
from common.instruments import DEFAULT_INSTRUMENT, DEFAULT_SYMBOL
from common.journal import batches_of
from common.messages import OrderAccepted, OrderRejected, PlaceOrder, Side, TradeExecuted
from tests.engine.reference import ReferenceExchange
from tests.faults.load import Load
from tests.faults.tape import Tape
from tests.helpers import eventually

T = TypeVar("T")

# What a later command cannot change about an order (fills change the rest).
FIXED = ("order_id", "client_order_id", "symbol", "side", "type", "time_in_force",
         "post_only", "stp", "quantity", "price", "user_id", "created_at")
PAGE = 100
READERS = 16  # concurrent read-backs
BOOK_LEVELS = 100  # levels per side in a book request's answer (the load uses 13)
CATCH_UP = 30.0  # seconds the projection gets to catch up with the engine


@dataclass
class Endpoints:
    http: aiohttp.ClientSession
    orders: str  # base URLs
    trades: str
    nats: str


@dataclass
class Summary:
    acknowledged: int
    open: int
    open_stored: int
    trades: int
    orders: int
    live: int

    def __str__(self) -> str:
        return (f"{self.acknowledged} acknowledged, {self.open} open outcomes "
                f"({self.open_stored} stored), {self.trades} trades, {self.orders} orders "
                f"({self.live} live)")


async def get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        answer = await response.json()
        assert response.status == 200, (url, response.status, answer)
        return answer


async def engine_book(nats_url: str) -> dict[str, Any]:
    """The book as svc_orders' engine holds it (the request svc_trades makes too)."""
    nc = await nats.connect(nats_url, allow_reconnect=False)
    try:
        reply = await nc.request(subjects.BOOK_REQUEST, DEFAULT_SYMBOL.encode(), timeout=5)
    finally:
        await nc.close()
    book: dict[str, Any] = msgspec.json.decode(reply.data)
    assert "error" not in book, book
    return book


async def projected_seq(at: Endpoints) -> int:
    """The last command of the instrument that svc_trades has projected."""
    listing = await get(at.http, f"{at.trades}/trades/?page_size=1")
    return int(listing["as_of_seq"].get(DEFAULT_SYMBOL, 0))


async def caught_up(at: Endpoints) -> dict[str, Any]:
    """The engine's book once the projection holds every command it matched."""
    async def check() -> dict[str, Any]:
        book = await engine_book(at.nats)
        projected = await projected_seq(at)
        assert projected == book["seq"], f"projected seq {projected}, engine {book['seq']}"
        return book
    return await eventually(check, timeout=CATCH_UP, interval=0.1)


async def _all_pages(at: Endpoints, url: str, key: str) -> list[dict[str, Any]]:
    """Every row of a listing, through its cursor."""
    rows: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = await get(at.http, f"{url}?page_size={PAGE}{cursor}")
        rows.extend(page[key])
        if not page["pagination"]["has_next"]:
            return rows
        cursor = f"&cursor={page['pagination']['next_cursor']}"


async def _bounded(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Await the calls, at most READERS at a time, and return their results in order."""
    gate = asyncio.Semaphore(READERS)

    async def run(call: Awaitable[T]) -> T:
        async with gate:
            return await call
    return await asyncio.gather(*(run(call) for call in calls))


async def _stored_open_orders(at: Endpoints, load: Load) -> dict[str, dict[str, Any]]:
    """The orders of open outcomes that the journal did store, by client order id."""
    async def look_up(client_order_id: str) -> tuple[str, list[dict[str, Any]]]:
        listing = await get(at.http,
                            f"{at.orders}/orders/?client_order_id={client_order_id}")
        return client_order_id, listing["orders"]

    found = await _bounded(look_up(client_order_id) for client_order_id in sorted(load.open))
    stored: dict[str, dict[str, Any]] = {}
    for client_order_id, orders in found:
        assert len(orders) <= 1, f"{client_order_id} placed {len(orders)} times"
        if orders:
            stored[client_order_id] = orders[0]
    return stored


def _without_fills(order: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in order.items() if key != "fills"}


def _check_read_back(answered: dict[str, Any], now: dict[str, Any]) -> None:
    """`now` is `answered` after at most later fills."""
    assert {k: now[k] for k in FIXED} == {k: answered[k] for k in FIXED}, (answered, now)
    assert now["traded_quantity"] >= answered["traded_quantity"], (answered, now)
    assert now["seq"] >= answered["seq"], (answered, now)
    if not answered["is_active"]:  # nothing could change it afterwards
        assert now == _without_fills(answered), (answered, now)


def _taker(trade: dict[str, Any]) -> str:
    return str(trade["bid_order_id" if trade["aggressor_side"] == "buy" else "ask_order_id"])


def _check_trades(trades: list[dict[str, Any]], acknowledged: Iterable[dict[str, Any]],
                  stored_open: Iterable[dict[str, Any]]) -> None:
    """Projected trades = the acknowledged fills + those taken by stored open orders."""
    ids = Counter(trade["trade_id"] for trade in trades)
    assert not [t for t, n in ids.items() if n > 1], "a trade projected twice"
    numbers = sorted(trade["trade_no"] for trade in trades)
    assert numbers == list(range(1, len(trades) + 1)), (
        f"trade_no not gap-free from 1: {len(numbers)} trades up to {numbers[-1:]}, missing "
        f"{sorted(set(range(1, (numbers or [0])[-1] + 1)) - set(numbers))[:20]}")
    by_id = {trade["trade_id"]: trade for trade in trades}
    fills = {fill["trade_id"]: fill for order in acknowledged for fill in order["fills"]}
    missing = fills.keys() - by_id.keys()
    assert not missing, f"{len(missing)} acknowledged fills not projected"
    for trade_id, fill in fills.items():
        assert by_id[trade_id] == fill, (fill, by_id[trade_id])
    open_takers = {order["order_id"] for order in stored_open}
    unexplained = [trade for trade_id, trade in by_id.items()
                   if trade_id not in fills and _taker(trade) not in open_takers]
    assert not unexplained, f"{len(unexplained)} trades of no known command: {unexplained[:3]}"


def _check_traded(orders: Iterable[dict[str, Any]], trades: Iterable[dict[str, Any]]) -> None:
    traded: Counter[str] = Counter()
    for trade in trades:
        traded[trade["bid_order_id"]] += trade["quantity"]
        traded[trade["ask_order_id"]] += trade["quantity"]
    for order in orders:
        assert order["traded_quantity"] == traded[order["order_id"]], order


def _aggregated(live: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The book levels of live orders: best first, with total quantity and order count."""
    sides: dict[str, dict[str, list[int]]] = {"buy": {}, "sell": {}}
    for order in live:
        level = sides[order["side"]].setdefault(order["price"], [0, 0])
        level[0] += order["remaining_quantity"]
        level[1] += 1
    def levels(side: str, best_first: bool) -> list[dict[str, Any]]:
        prices = sorted(sides[side], key=Decimal, reverse=best_first)
        return [{"price": p, "quantity": sides[side][p][0], "orders": sides[side][p][1]}
                for p in prices]
    return {"bids": levels("buy", True), "asks": levels("sell", False)}


async def _check_tape(tape: Tape, trades: list[dict[str, Any]]) -> None:
    def complete() -> bool:
        assert tape.closed is None, tape.closed
        numbers = Counter(trade["trade_no"] for trade in tape.trades)
        repeated = sorted(n for n, count in numbers.items() if count > 1)
        assert not repeated, f"trade_no {repeated} received twice"
        missed = sorted(set(range(1, len(trades) + 1)) - numbers.keys())
        assert not missed, f"trade_no {missed} not received"
        return True
    await eventually(complete, timeout=5)
    assert tape.trades == sorted(trades, key=lambda trade: int(trade["trade_no"]))


async def journaled_placements(nats_url: str) -> list[str]:
    """The order ids of the instrument's commands in journal order, each message of the
    `EXCHANGE` stream fetched on its own; every command must be a placement (all the load
    sends) and the seqs must run 1, 2, 3, ... in stream order."""
    nc = await nats.connect(nats_url, allow_reconnect=False)
    try:
        js = nc.jetstream()
        state = (await js.stream_info(subjects.STREAM)).state
        stored = await _bounded(js.get_msg(subjects.STREAM, seq)
                                for seq in range(state.first_seq, state.last_seq + 1))
    finally:
        await nc.close()
    seqs: list[int] = []
    placements: list[str] = []
    for msg in stored:
        if msg.subject == subjects.TAKEOVER:
            continue
        assert msg.subject == subjects.events(DEFAULT_SYMBOL), msg.subject
        assert msg.data is not None, msg.seq
        for batch in batches_of(msg.data):
            seqs.append(batch.seq)
            placed = batch.events[0]
            assert isinstance(placed, OrderAccepted | OrderRejected), batch
            placements.append(placed.order.order_id)
    assert seqs == list(range(1, len(seqs) + 1)), "journal seqs out of order or with gaps"
    return placements


def _command(sent: dict[str, Any], order_id: str) -> PlaceOrder:
    """The command a request body of the load asks for (every field the load sets; the
    rest are the API's defaults for a limit order)."""
    price = DEFAULT_INSTRUMENT.to_units(Decimal(sent["price"]))
    assert price is not None, sent
    return PlaceOrder(order_id=order_id, symbol=DEFAULT_SYMBOL, side=Side(sent["side"]),
                      quantity=int(sent["quantity"]), price=price, user_id=sent["user_id"],
                      client_order_id=sent["client_order_id"])


def _check_reference(journal: list[str], placed: dict[str, dict[str, Any]], load: Load,
                     book: dict[str, Any], read_back: dict[str, dict[str, Any]],
                     trades: list[dict[str, Any]]) -> None:
    """A reference engine fed the placed orders' commands in journal order ends where the
    engine did: same book (levels, resting orders and their remaining quantities), same
    seq, same trades."""
    client_ids = {order["order_id"]: client_id for client_id, order in placed.items()}
    repeated = [o for o, n in Counter(journal).items() if n > 1]
    assert not repeated, f"orders journaled twice: {repeated[:5]}"
    assert set(journal) == client_ids.keys(), (
        f"{len(client_ids.keys() - set(journal))} placed orders not in the journal, "
        f"{len(set(journal) - client_ids.keys())} journaled orders of no known command")
    reference = ReferenceExchange({DEFAULT_SYMBOL: DEFAULT_INSTRUMENT})
    made: list[TradeExecuted] = []
    for order_id in journal:
        batch = reference.submit(_command(load.sent[client_ids[order_id]], order_id))
        made.extend(event for event in batch.events if isinstance(event, TradeExecuted))
    assert reference.seq(DEFAULT_SYMBOL) == book["seq"], (reference.seq(DEFAULT_SYMBOL),
                                                          book["seq"])

    def levels(side: Side) -> list[dict[str, Any]]:
        return [{"price": DEFAULT_INSTRUMENT.format_price(price), "quantity": quantity,
                 "orders": orders}
                for price, quantity, orders in reference.depth(DEFAULT_SYMBOL, BOOK_LEVELS)[
                    0 if side is Side.BUY else 1]]
    bids, asks = levels(Side.BUY), levels(Side.SELL)
    assert (bids, asks) == (book["bids"], book["asks"]), (
        f"reference {bids} {asks}, engine {book['bids']} {book['asks']}")

    resting = {(side.value, DEFAULT_INSTRUMENT.format_price(price), order_id): remaining
               for side in Side for price, queue in reference.levels(DEFAULT_SYMBOL, side)
               for order_id, remaining in queue}
    shown = {(order["side"], order["price"], order["order_id"]): order["remaining_quantity"]
             for order in read_back.values() if order["is_active"]}
    assert resting == shown, (
        f"resting in the reference only: {sorted(resting.items() - shown.items())[:5]}; "
        f"in svc_orders only: {sorted(shown.items() - resting.items())[:5]}")

    expected = [(t.trade_no, DEFAULT_INSTRUMENT.format_price(t.price), t.quantity,
                 t.buy_order_id, t.sell_order_id, t.aggressor_side.value) for t in made]
    projected = sorted((t["trade_no"], t["price"], t["quantity"], t["bid_order_id"],
                        t["ask_order_id"], t["aggressor_side"]) for t in trades)
    differ = next((n for n, (a, b) in enumerate(zip(projected, expected, strict=False))
                   if a != b), min(len(projected), len(expected)))
    assert projected == expected, (
        f"{len(projected)} trades projected, {len(expected)} made by the reference; the "
        f"first that differs: {projected[differ:differ + 1]} vs {expected[differ:differ + 1]}")


async def check_consistency(at: Endpoints, load: Load, tape: Tape) -> Summary:
    """Every check in the module docstring; the load must have stopped."""
    book = await caught_up(at)
    stored_open = await _stored_open_orders(at, load)
    placed = {**load.acknowledged, **stored_open}  # by client order id
    trades = await _all_pages(at, f"{at.trades}/trades/", "trades")
    _check_trades(trades, load.acknowledged.values(), stored_open.values())

    projected = await _all_pages(at, f"{at.trades}/orders/", "orders")
    counted = Counter(order["order_id"] for order in projected)
    assert not [o for o, n in counted.items() if n > 1], "an order projected twice"
    assert set(counted) == {order["order_id"] for order in placed.values()}

    read_back = await _bounded(get(at.http, f"{at.orders}/orders/{order_id}/")
                               for order_id in counted)
    by_id = {order["order_id"]: order for order in read_back}
    for client_order_id, answered in load.acknowledged.items():
        assert client_order_id == answered["client_order_id"]
        _check_read_back(answered, by_id[answered["order_id"]])
    for order in projected:
        assert order == by_id[order["order_id"]], (order, by_id[order["order_id"]])
    _check_traded(projected, trades)

    live = [order for order in projected if order["is_active"]]
    expected = _aggregated(live)
    assert {"bids": book["bids"], "asks": book["asks"]} == expected
    _check_reference(await journaled_placements(at.nats), placed, load, book, by_id, trades)

    async def served_book() -> bool:
        served = await get(at.http, f"{at.trades}/orderbook/?depth={BOOK_LEVELS}")
        assert (served["seq"], served["bids"], served["asks"]) == (
            book["seq"], book["bids"], book["asks"])
        return True
    await eventually(served_book, timeout=5, interval=0.1)
    await _check_tape(tape, trades)
    return Summary(acknowledged=len(load.acknowledged), open=len(load.open),
                   open_stored=len(stored_open), trades=len(trades), orders=len(projected),
                   live=len(live))
