"""Balances beside the books (funding on): what each user has, what their orders hold.

Every amount is in asset units (`common.assets`). Per user and asset a balance is
`available` plus `held`; `holds` says how much each live order holds, and the fee
account of each asset collects the fees. The engine asks for a hold before an order
enters matching and settles every trade from the holds of its two orders, so no order
ever spends what its user does not have, and all of it happens inside one command.

What an order holds ("needs"):
- a sell: its remaining quantity of base;
- a limit buy: remaining * (price + fee), the fee per unit at the higher of the
  instrument's maker and taker rates, rounded up to the asset unit;
- a market buy: exactly what walking the book will cost it, fees included.
A trade charges each side `quantity * ceil(price * rate)` of quote (the maker or taker
rate of its role): the buyer on top of the price, out of its hold, the seller out of
its proceeds. Per unit, a buy filled at its limit or lower never costs more than it
holds; what is left over comes back when the order's need drops (a better price, a
fill at the maker rate, a cancel, an expiry, a smaller modify).

Invariants (`check`): nothing is negative; each user's `held` of an asset is the sum of
its orders' holds; each live order holds exactly what it needs; per asset, all balances
plus the fee account equal deposits minus withdrawals.

Balances change only through `apply`, which both the live engine (for the events it
makes) and recovery (for the journaled ones) call: the journal alone rebuilds them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import msgspec

from common.assets import BASE_UNIT, MAX_AMOUNT, homes, price_factor
from common.instruments import Instrument
from common.messages import (
    CommandRejected,
    Event,
    EventBatch,
    FundsExchanged,
    FundsHeld,
    FundsReleased,
    FundsTransferred,
    ModifyOrder,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderModified,
    PlaceOrder,
    RejectReason,
    Side,
    Stp,
    TradeExecuted,
    TransferFunds,
    remaining_quantity,
)
from svc_orders.matching.order import Order

if TYPE_CHECKING:  # the books import the captured state, which imports this module
    from svc_orders.matching.book import Book

BPS = 10_000
BALANCE_EVENTS = (FundsTransferred, FundsHeld, FundsReleased, FundsExchanged)


class Hold(msgspec.Struct, array_like=True, gc=False):
    """What one live order holds, and of whom."""

    user_id: str | None
    asset: str
    amount: int


class FundsState(msgspec.Struct, frozen=True, array_like=True):
    """Balances as the engine's captured state keeps them."""

    balances: list[tuple[str | None, str, int, int]]  # user, asset, available, held
    fees: list[tuple[str, int]]
    holds: list[tuple[str, Hold]]  # by order id
    transfers: list[TransferFunds]


def fee(quantity: int, unit_price: int, bps: int) -> int:
    """The fee of `quantity` at `unit_price` asset units: per unit, rounded up."""
    per_unit: int = -(-unit_price * bps // BPS)
    return quantity * per_unit


class Funds:
    def __init__(self, instruments: Mapping[str, Instrument]) -> None:
        self.instruments = instruments
        self.factors = {symbol: price_factor(i) for symbol, i in instruments.items()}
        for symbol, instrument in instruments.items():
            worst = instrument.max_price * self.factors[symbol] * instrument.max_quantity * 2
            if worst >= MAX_AMOUNT or instrument.max_quantity * BASE_UNIT >= MAX_AMOUNT:
                raise ValueError(f"{symbol}: an order's worth does not fit a 64-bit amount")
        # per symbol: quote units per price unit, the buy's fee rate (the higher one)
        self.buy_costs = {symbol: (self.factors[symbol], max(i.maker_fee_bps, i.taker_fee_bps))
                          for symbol, i in instruments.items()}
        # per symbol: base, quote, quote units per price unit, taker and maker rates
        self.trade_terms = {symbol: (i.base_asset, i.quote, self.factors[symbol],
                                     i.taker_fee_bps, i.maker_fee_bps)
                            for symbol, i in instruments.items()}
        self.homes = homes(instruments)
        self.balances: dict[tuple[str | None, str], list[int]] = {}  # [available, held]
        self.fees: dict[str, int] = defaultdict(int)
        self.holds: dict[str, Hold] = {}
        self.transfers: dict[str, TransferFunds] = {}

    # ---- what orders need ------------------------------------------------------------

    def unit_cost(self, symbol: str, price: int) -> int:
        """What one unit of a buy at `price` holds: price and fee, in quote units."""
        factor, rate = self.buy_costs[symbol]
        units = price * factor
        return units + -(-units * rate // BPS)

    def need(self, order: Order, price: int | None = None, remaining: int | None = None,
             ) -> int:
        """What a live limit `order` holds (at a new price and remaining, if given)."""
        remaining = order.remaining if remaining is None else remaining
        if not order.is_buy:
            return remaining * BASE_UNIT
        price = order.price if price is None else price
        assert price is not None, order
        return remaining * self.unit_cost(order.placed.symbol, price)

    def placement(self, book: Book, command: PlaceOrder) -> int:
        """What a new order must hold before it enters matching."""
        if command.side is Side.SELL:
            return command.quantity * BASE_UNIT
        if command.price is not None:
            return command.quantity * self.unit_cost(command.symbol, command.price)
        return self._market_cost(book, command)

    def _market_cost(self, book: Book, command: PlaceOrder) -> int:
        """What a market buy pays walking the asks as matching will (self-trade
        prevention included): price plus taker fee, per fill."""
        asks, factor = book.asks, self.factors[book.symbol]
        rate = book.instrument.taker_fee_bps
        stp_user = command.user_id if command.stp is not Stp.NONE else None
        left, cost = command.quantity, 0
        for price in asks.prices():
            units = price * factor
            for maker in asks.levels[price].values():
                if stp_user is not None and maker.placed.user_id == stp_user:
                    if command.stp is not Stp.CANCEL_OLDEST:
                        return cost
                    continue
                quantity = min(left, maker.remaining)
                cost += quantity * units + fee(quantity, units, rate)
                left -= quantity
                if not left:
                    return cost
        return cost

    def available(self, user_id: str | None, asset: str) -> int:
        found = self.balances.get((user_id, asset))
        return 0 if found is None else found[0]

    def balance_of(self, user_id: str | None, asset: str) -> tuple[int, int]:
        """What the user has of `asset`: (available, held), zeros for nothing."""
        found = self.balances.get((user_id, asset))
        return (0, 0) if found is None else (found[0], found[1])

    # ---- commands ----------------------------------------------------------------------

    def transfer(self, command: TransferFunds, books: Mapping[str, Book]) -> EventBatch:
        """A deposit or withdrawal, journaled in the sequence of the asset's home book."""
        home = self.homes.get(command.asset)
        ts = command.timestamp
        if home is None:
            return _refused("", ts, RejectReason.UNKNOWN_ASSET,
                            f"no instrument trades {command.asset!r}")
        if command.transfer_id in self.transfers:
            return _refused(home, ts, RejectReason.DUPLICATE_TRANSFER,
                            "a transfer with this id was made before")
        if command.amount <= 0:
            return _refused(home, ts, RejectReason.INVALID_QUANTITY, "amount must be positive")
        balance = self.balances.get((command.user_id, command.asset), [0, 0])
        if command.withdrawal and command.amount > balance[0]:
            return _refused(home, ts, RejectReason.INSUFFICIENT_FUNDS,
                            "the amount exceeds the available balance")
        if not command.withdrawal and sum(balance) + command.amount >= MAX_AMOUNT:
            return _refused(home, ts, RejectReason.BALANCE_LIMIT,
                            "the balance would exceed the largest amount kept")
        seq = books[home].next_seq()
        event = FundsTransferred(
            seq=seq, timestamp=ts, transfer_id=command.transfer_id, user_id=command.user_id,
            asset=command.asset, amount=command.amount, withdrawal=command.withdrawal)
        self.apply(event)
        return EventBatch(symbol=home, seq=seq, events=[event])

    def modify_shortfall(self, book: Book, order: Order, command: ModifyOrder) -> int:
        """How much more than it holds a valid modify of `order` needs (0 if none)."""
        price = order.price if command.price is None else command.price
        quantity = order.quantity if command.quantity is None else command.quantity
        needed = self.need(order, price, remaining_quantity(quantity, order.traded,
                                                            order.cancelled))
        hold = self.holds.get(order.order_id)
        return max(0, needed - (0 if hold is None else hold.amount))

    def settle(self, batch: EventBatch, orders: Mapping[str, Order],
               extra: tuple[str, int] | None = None) -> EventBatch:
        """The command's batch with its balance events: `extra` (order id, amount) is held
        when that order is accepted or modified, each trade is paid from the holds, each
        cancelled or expired order releases its hold, and every order the command touched
        ends holding what it needs (`orders`: the live ones)."""
        seq = batch.seq
        if not seq:
            return batch
        events: list[Event] = []
        touched: dict[str, None] = {}  # order ids, first touched first
        for event in batch.events:
            events.append(event)
            if type(event) is TradeExecuted:
                touched[event.buy_order_id] = touched[event.sell_order_id] = None
                exchanged = self._exchange(event)
                self._exchanged(exchanged)
                events.append(exchanged)
            elif type(event) is OrderCancelled or type(event) is OrderExpired:
                self._release(events, seq, event.order_id, None)
            elif type(event) is OrderAccepted:
                placed = event.order
                touched[placed.order_id] = None
                if extra is not None and extra[0] == placed.order_id and extra[1]:
                    instrument = self.instruments[placed.symbol]
                    asset = (instrument.quote if placed.side is Side.BUY
                             else instrument.base_asset)
                    self._emit(events, FundsHeld(seq, placed.order_id, placed.user_id, asset,
                                                 extra[1]))
            elif type(event) is OrderModified:
                touched[event.order_id] = None
                if extra is not None and extra[0] == event.order_id and extra[1]:
                    hold = self.holds[event.order_id]  # a live order always holds
                    self._emit(events, FundsHeld(seq, event.order_id, hold.user_id,
                                                 hold.asset, extra[1]))
        for order_id in touched:
            kept = self.holds.get(order_id)
            if kept is not None:
                order = orders.get(order_id)
                surplus = kept.amount - (0 if order is None else self.need(order))
                assert surplus >= 0, (order_id, kept, order)
                self._release(events, seq, order_id, surplus)
        return EventBatch(symbol=batch.symbol, seq=seq, events=events, key_id=batch.key_id)

    # ---- the fold -------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Fold one balance event (live or replayed)."""
        if type(event) is FundsHeld:
            self._held(event)
        elif type(event) is FundsReleased:
            self._released(event)
        elif type(event) is FundsExchanged:
            self._exchanged(event)
        elif type(event) is FundsTransferred:
            sign = -1 if event.withdrawal else 1
            self._balance(event.user_id, event.asset)[0] += sign * event.amount
            self.transfers[event.transfer_id] = TransferFunds(
                transfer_id=event.transfer_id, user_id=event.user_id, asset=event.asset,
                amount=event.amount, withdrawal=event.withdrawal, timestamp=event.timestamp)

    def _held(self, event: FundsHeld) -> None:
        balance = self._balance(event.user_id, event.asset)
        balance[0] -= event.amount
        balance[1] += event.amount
        hold = self.holds.get(event.order_id)
        if hold is None:
            self.holds[event.order_id] = Hold(event.user_id, event.asset, event.amount)
        else:
            hold.amount += event.amount

    def _released(self, event: FundsReleased) -> None:
        balance = self._balance(event.user_id, event.asset)
        balance[0] += event.amount
        balance[1] -= event.amount
        self._unhold(event.order_id, event.amount)

    def _exchanged(self, event: FundsExchanged) -> None:
        paid = event.amount + event.buyer_fee
        self._balance(event.buyer_user_id, event.quote)[1] -= paid
        self._unhold(event.buy_order_id, paid)
        self._balance(event.buyer_user_id, event.base)[0] += event.base_amount
        self._balance(event.seller_user_id, event.base)[1] -= event.base_amount
        self._unhold(event.sell_order_id, event.base_amount)
        self._balance(event.seller_user_id, event.quote)[0] += event.amount - event.seller_fee
        self.fees[event.quote] += event.buyer_fee + event.seller_fee

    def apply_all(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, BALANCE_EVENTS):
                self.apply(event)

    # ---- state ------------------------------------------------------------------------------

    def capture(self) -> FundsState:
        return FundsState(
            [(user, asset, a, h) for (user, asset), (a, h) in self.balances.items()],
            [(asset, amount) for asset, amount in self.fees.items() if amount],
            [(order_id, Hold(h.user_id, h.asset, h.amount))
             for order_id, h in self.holds.items()],
            list(self.transfers.values()))

    def restore(self, state: FundsState) -> None:
        self.balances = {(user, asset): [a, h] for user, asset, a, h in state.balances}
        self.fees.update(state.fees)
        self.holds = dict(state.holds)
        self.transfers = {t.transfer_id: t for t in state.transfers}

    def totals(self) -> dict[str, int]:
        """Per asset, everything the users and the fee account have."""
        found: dict[str, int] = defaultdict(int)
        for (_, asset), (available, held) in self.balances.items():
            found[asset] += available + held
        for asset, amount in self.fees.items():
            found[asset] += amount
        return dict(found)

    def net_transfers(self) -> dict[str, int]:
        """Per asset, deposits minus withdrawals."""
        found: dict[str, int] = defaultdict(int)
        for t in self.transfers.values():
            found[t.asset] += -t.amount if t.withdrawal else t.amount
        return dict(found)

    def check(self, orders: Mapping[str, Order]) -> None:
        """Raise AssertionError if an invariant of the module docstring is broken."""
        held: dict[tuple[str | None, str], int] = defaultdict(int)
        for order_id, hold in self.holds.items():
            order = orders.get(order_id)
            assert order is not None, f"order {order_id} holds {hold} but is not live"
            assert hold.amount == self.need(order), (order, hold, self.need(order))
            assert (hold.user_id, hold.asset) == (order.user_id, self._asset(order)), hold
            held[(hold.user_id, hold.asset)] += hold.amount
        for order_id in orders:
            assert order_id in self.holds, f"live order {order_id} holds nothing"
        for key, (available, on_hold) in self.balances.items():
            assert available >= 0, (key, available)
            assert on_hold >= 0, (key, on_hold)
            assert on_hold == held.get(key, 0), (key, on_hold, held.get(key, 0))
        assert all(amount >= 0 for amount in self.fees.values()), self.fees
        totals, net = self.totals(), self.net_transfers()
        for asset in set(totals) | set(net):
            assert totals.get(asset, 0) == net.get(asset, 0), (asset, totals, net)

    # ---- helpers ------------------------------------------------------------------------

    def _balance(self, user_id: str | None, asset: str) -> list[int]:
        found = self.balances.get((user_id, asset))
        if found is None:
            found = self.balances[(user_id, asset)] = [0, 0]
        return found

    def _unhold(self, order_id: str, amount: int) -> None:
        hold = self.holds[order_id]
        hold.amount -= amount
        if not hold.amount:
            del self.holds[order_id]

    def _asset(self, order: Order) -> str:
        instrument = self.instruments[order.symbol]
        return instrument.quote if order.is_buy else instrument.base_asset

    def _exchange(self, trade: TradeExecuted) -> FundsExchanged:
        base, quote, factor, taker, maker = self.trade_terms[trade.symbol]
        units, quantity = trade.price * factor, trade.quantity
        buyer_rate, seller_rate = ((taker, maker) if trade.aggressor_side is Side.BUY
                                   else (maker, taker))
        return FundsExchanged(
            trade.seq, trade.trade_no, base, quote, trade.buy_order_id, trade.sell_order_id,
            trade.buyer_user_id, trade.seller_user_id, quantity * BASE_UNIT, quantity * units,
            quantity * -(-units * buyer_rate // BPS), quantity * -(-units * seller_rate // BPS))

    def _release(self, events: list[Event], seq: int, order_id: str,
                 amount: int | None) -> None:
        """Release `amount` of an order's hold (None: all of it)."""
        hold = self.holds.get(order_id)
        if hold is not None:
            amount = hold.amount if amount is None else amount
            if amount:
                self._emit(events, FundsReleased(seq, order_id, hold.user_id, hold.asset,
                                                 amount))

    def _emit(self, events: list[Event], event: FundsHeld | FundsReleased) -> None:
        if type(event) is FundsHeld:
            self._held(event)
        elif type(event) is FundsReleased:
            self._released(event)
        events.append(event)


def _refused(symbol: str, timestamp: int, reason: RejectReason, message: str) -> EventBatch:
    return EventBatch(symbol=symbol, seq=0, events=[CommandRejected(
        timestamp=timestamp, order_id="", reason=reason, message=message)])
