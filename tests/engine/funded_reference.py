"""Reference model of funding: the reference exchange with balances, written from the rules.

Shares nothing with `svc_orders.matching.funds` but the message schemas and the asset
scale. Balances are plain dicts; an order's need is computed from its model state:

- a sell needs remaining x BASE_UNIT of base;
- a limit buy needs remaining x (p + ceil(p x r)) of quote, p its price in asset units
  and r the larger of the instrument's fee rates;
- a market buy, before matching, needs what its fills will cost: per fill
  q x (p + ceil(p x taker rate)), walking the asks as matching does.
An order that passes every other check but needs more than its user's available is
REJECTED (INSUFFICIENT_FUNDS); a modify that needs more is refused (seq 0). A command's
batch is the reference batch with, in order: the hold after OrderAccepted/OrderModified,
the money of each trade after it, a full release after each cancel or expiry, and at the
end a release of what each order it touched holds beyond its need (first touched first).
Deposits and withdrawals are journaled in the sequence of the first instrument that
trades the asset.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from common.assets import ASSET_DECIMALS, BASE_UNIT, MAX_AMOUNT
from common.instruments import Instrument
from common.messages import (
    Command,
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
    OrderRejected,
    OrderType,
    PlaceOrder,
    RejectReason,
    Side,
    Stp,
    TradeExecuted,
    TransferFunds,
)
from tests.engine.reference import RefBook, ReferenceExchange, RefOrder, refused


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class FundedReference(ReferenceExchange):
    def __init__(self, instruments: Mapping[str, Instrument]) -> None:
        super().__init__(instruments)
        self.instruments = instruments
        self.available: dict[tuple[str | None, str], int] = defaultdict(int)
        self.holds: dict[str, tuple[str | None, str, int]] = {}  # order: user, asset, amount
        self.fees: dict[str, int] = defaultdict(int)
        self.transfer_ids: set[str] = set()
        self.net: dict[str, int] = defaultdict(int)  # deposits minus withdrawals

    # ---- rules ---------------------------------------------------------------------

    def units(self, instrument: Instrument, price: int) -> int:
        factor: int = 10 ** (ASSET_DECIMALS - instrument.decimals)
        return price * factor

    def need(self, order: RefOrder) -> int:
        instrument = self.instruments[order.symbol]
        if order.side is Side.SELL:
            return order.remaining * BASE_UNIT
        p = self.units(instrument, order.limit)
        rate = max(instrument.maker_fee_bps, instrument.taker_fee_bps)
        return order.remaining * (p + ceil_div(p * rate, 10_000))

    def asset(self, instrument: Instrument, side: Side) -> str:
        return instrument.quote if side is Side.BUY else instrument.base_asset

    def held(self, user: str | None, asset: str) -> int:
        return sum(amount for u, a, amount in self.holds.values() if (u, a) == (user, asset))

    # ---- commands ------------------------------------------------------------------

    def submit(self, command: Command) -> EventBatch:
        if isinstance(command, TransferFunds):
            return self.transfer(command)
        if isinstance(command, PlaceOrder):
            return self.place_funded(command)
        if isinstance(command, ModifyOrder):
            return self.modify_funded(command)
        return self.settle(super().submit(command), None)

    def transfer(self, cmd: TransferFunds) -> EventBatch:
        home = next((s for s, i in self.instruments.items()
                     if cmd.asset in (i.base_asset, i.quote)), None)
        if home is None:
            return refused("", cmd.timestamp, "", RejectReason.UNKNOWN_ASSET)
        available = self.available[(cmd.user_id, cmd.asset)]
        reason = None
        if cmd.transfer_id in self.transfer_ids:
            reason = RejectReason.DUPLICATE_TRANSFER
        elif cmd.amount <= 0:
            reason = RejectReason.INVALID_QUANTITY
        elif cmd.withdrawal and cmd.amount > available:
            reason = RejectReason.INSUFFICIENT_FUNDS
        elif (not cmd.withdrawal and available + self.held(cmd.user_id, cmd.asset)
              + cmd.amount >= MAX_AMOUNT):
            reason = RejectReason.BALANCE_LIMIT
        if reason is not None:
            return refused(home, cmd.timestamp, "", reason)
        book = self.books[home]
        book.seq += 1
        signed = -cmd.amount if cmd.withdrawal else cmd.amount
        self.available[(cmd.user_id, cmd.asset)] += signed
        self.net[cmd.asset] += signed
        self.transfer_ids.add(cmd.transfer_id)
        return EventBatch(symbol=home, seq=book.seq, events=[FundsTransferred(
            seq=book.seq, timestamp=cmd.timestamp, transfer_id=cmd.transfer_id,
            user_id=cmd.user_id, asset=cmd.asset, amount=cmd.amount,
            withdrawal=cmd.withdrawal)])

    def place_funded(self, cmd: PlaceOrder) -> EventBatch:
        book = self.books.get(cmd.symbol)
        if book is None or self.live_order(cmd.order_id) is not None:
            return super().place(cmd)
        order = RefOrder(
            order_id=cmd.order_id, symbol=cmd.symbol, side=cmd.side, type=cmd.type,
            time_in_force=cmd.time_in_force, price=cmd.price, quantity=cmd.quantity,
            remaining=cmd.quantity, post_only=cmd.post_only, stp=cmd.stp,
            user_id=cmd.user_id, client_order_id=cmd.client_order_id)
        if self.refusal(book, order) is not None:
            return super().place(cmd)
        if cmd.side is Side.SELL or cmd.type is OrderType.LIMIT:
            hold = self.need(order)
        else:
            hold = self.market_cost(book, order)
        if hold > self.available[(cmd.user_id, self.asset(book.instrument, cmd.side))]:
            book.seq += 1
            return EventBatch(symbol=cmd.symbol, seq=book.seq, events=[OrderRejected(
                seq=book.seq, order=cmd, reason=RejectReason.INSUFFICIENT_FUNDS)])
        return self.settle(super().place(cmd), (cmd.order_id, hold))

    def market_cost(self, book: RefBook, taker: RefOrder) -> int:
        instrument = book.instrument
        left, cost = taker.quantity, 0
        for maker in book.queue(Side.SELL):
            if taker.user_id is not None and maker.user_id == taker.user_id and (
                    taker.stp is not Stp.NONE):
                if taker.stp is Stp.CANCEL_OLDEST:
                    continue
                break
            q = min(left, maker.remaining)
            p = self.units(instrument, maker.limit)
            cost += q * (p + ceil_div(p * instrument.taker_fee_bps, 10_000))
            left -= q
            if not left:
                break
        return cost

    def modify_funded(self, cmd: ModifyOrder) -> EventBatch:
        order = self.live_order(cmd.order_id)
        if order is None or self.modify_refusal(order, cmd) is not None:
            return super().modify(cmd)
        quantity = order.quantity if cmd.quantity is None else cmd.quantity
        after = RefOrder(
            order_id=order.order_id, symbol=order.symbol, side=order.side, type=order.type,
            time_in_force=order.time_in_force,
            price=order.price if cmd.price is None else cmd.price, quantity=quantity,
            remaining=quantity - order.traded, post_only=order.post_only, stp=order.stp,
            user_id=order.user_id, client_order_id=order.client_order_id)
        user, asset, amount = self.holds[order.order_id]
        extra = max(0, self.need(after) - amount)
        if extra > self.available[(user, asset)]:
            return refused(order.symbol, cmd.timestamp, cmd.order_id,
                           RejectReason.INSUFFICIENT_FUNDS)
        return self.settle(super().modify(cmd), (order.order_id, extra))

    # ---- balance events ----------------------------------------------------------------

    def settle(self, batch: EventBatch, extra: tuple[str, int] | None) -> EventBatch:
        if not batch.seq:
            return batch
        seq = batch.seq
        events: list[Event] = []
        touched: list[str] = []

        def touch(order_id: str) -> None:
            if order_id not in touched:
                touched.append(order_id)

        def hold(order_id: str, user: str | None, asset: str, amount: int) -> None:
            self.available[(user, asset)] -= amount
            _, _, before = self.holds.get(order_id, (user, asset, 0))
            self.holds[order_id] = (user, asset, before + amount)
            events.append(FundsHeld(seq=seq, order_id=order_id, user_id=user, asset=asset,
                                    amount=amount))

        def release(order_id: str, amount: int) -> None:
            user, asset, before = self.holds[order_id]
            self.available[(user, asset)] += amount
            if before == amount:
                del self.holds[order_id]
            else:
                self.holds[order_id] = (user, asset, before - amount)
            events.append(FundsReleased(seq=seq, order_id=order_id, user_id=user, asset=asset,
                                        amount=amount))

        def spend(order_id: str, amount: int) -> None:
            user, asset, before = self.holds[order_id]
            assert before >= amount, (order_id, before, amount)
            if before == amount:
                del self.holds[order_id]
            else:
                self.holds[order_id] = (user, asset, before - amount)

        for event in batch.events:
            events.append(event)
            if isinstance(event, OrderAccepted):
                touch(event.order.order_id)
                if extra is not None and extra[0] == event.order.order_id and extra[1]:
                    instrument = self.instruments[event.order.symbol]
                    hold(event.order.order_id, event.order.user_id,
                         self.asset(instrument, event.order.side), extra[1])
            elif isinstance(event, OrderModified):
                touch(event.order_id)
                if extra is not None and extra[0] == event.order_id and extra[1]:
                    user, asset, _ = self.holds[event.order_id]
                    hold(event.order_id, user, asset, extra[1])
            elif isinstance(event, TradeExecuted):
                touch(event.buy_order_id)
                touch(event.sell_order_id)
                instrument = self.instruments[event.symbol]
                p = self.units(instrument, event.price)
                taker, maker = instrument.taker_fee_bps, instrument.maker_fee_bps
                buyer_rate = taker if event.aggressor_side is Side.BUY else maker
                seller_rate = maker if event.aggressor_side is Side.BUY else taker
                q = event.quantity
                money = FundsExchanged(
                    seq=seq, trade_no=event.trade_no, base=instrument.base_asset,
                    quote=instrument.quote, buy_order_id=event.buy_order_id,
                    sell_order_id=event.sell_order_id, buyer_user_id=event.buyer_user_id,
                    seller_user_id=event.seller_user_id, base_amount=q * BASE_UNIT,
                    amount=q * p, buyer_fee=q * ceil_div(p * buyer_rate, 10_000),
                    seller_fee=q * ceil_div(p * seller_rate, 10_000))
                spend(event.buy_order_id, money.amount + money.buyer_fee)
                spend(event.sell_order_id, money.base_amount)
                self.available[(event.buyer_user_id, money.base)] += money.base_amount
                self.available[(event.seller_user_id, money.quote)] += (
                    money.amount - money.seller_fee)
                self.fees[money.quote] += money.buyer_fee + money.seller_fee
                events.append(money)
            elif isinstance(event, OrderCancelled | OrderExpired) and event.order_id in self.holds:
                release(event.order_id, self.holds[event.order_id][2])
        for order_id in touched:
            if order_id in self.holds:
                live = self.live_order(order_id)
                surplus = self.holds[order_id][2] - (0 if live is None else self.need(live))
                assert surplus >= 0, order_id
                if surplus:
                    release(order_id, surplus)
        return EventBatch(symbol=batch.symbol, seq=seq, events=events)
