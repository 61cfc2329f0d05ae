"""What one projection transaction writes: a fetch of journal messages, folded.

Pure and synchronous (no I/O), so the projector prepares the next fetch while the
previous one is being written. The fold is `common.orderstate.apply` over the live
orders, which the projector keeps in memory the way the engine keeps its book: only a
live order can be changed by a later event, and a finished one leaves the map. Rows come
out ready for PostgreSQL: COPY records for new orders and trades (prices as Decimals on
the instrument's grid, times as datetimes at microsecond precision), update rows for
orders that existed before this fetch.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import msgspec
import structlog
from nats.aio.msg import Msg

from common.instruments import Instrument
from common.journal import batches_of
from common.messages import EventBatch, OrderAccepted, OrderRejected, TradeExecuted
from common.orderstate import OrderState, apply, order_ids
from common.views import trade_id
from svc_trades import metrics
from svc_trades.ledger import LEDGER_EVENTS, Poster, PostingRow, batch_time
from svc_trades.rows import (
    OrderRow,
    OrderUpdate,
    TradeRow,
    Uuid,
    moment,
    storable,
    storable_or_none,
)

log = structlog.get_logger(__name__)

CREATING = frozenset((OrderAccepted, OrderRejected))
LEDGER_TYPES = frozenset(LEDGER_EVENTS)


class Gap(NamedTuple):
    """A batch `seq` of `symbol` right after its batch `last`, where `last + 1` was due."""

    symbol: str
    last: int
    seq: int


class SequenceGap(Exception):
    """A batch that does not follow its instrument's last one. The journal is gap-free
    by construction, so the delivery missed a message (a consumer whose leader died with
    a message in flight delivers the next ones and redelivers that one only after the
    acknowledgement wait, when it would be skipped as a duplicate): the session ends,
    and the next one reads on from PostgreSQL's position with a new consumer. A gap seen
    again from there is the journal's own (say, one without its beginning): it is then
    projected past, counted and logged (`Fold.known_gaps`)."""

    def __init__(self, gap: Gap) -> None:
        super().__init__(f"{gap.symbol}: batch {gap.seq} after {gap.last}")
        self.gap = gap


def passed_over(data: bytes, seqs: Mapping[str, int]) -> dict[str, int]:
    """The instruments' positions (`seqs` before the message) once the batches of a
    decodable message that is parked (its rows cannot be stored or folded) are passed
    over: a batch that directly follows its instrument's position moves it, so the next
    one is no gap (a batch past a gap moves nothing: the gap stays the journal's)."""
    try:
        batches = batches_of(data)
    except msgspec.DecodeError:
        return {}
    moved: dict[str, int] = {}
    for batch in batches:
        if batch.seq == moved.get(batch.symbol, seqs.get(batch.symbol, 0)) + 1:
            moved[batch.symbol] = batch.seq
    return moved


@dataclass
class Changes:
    """One fetch, folded: everything its transaction writes, and where it leaves us."""

    messages: list[Msg]
    position: int  # stream sequence reached
    seqs: dict[str, int] = field(default_factory=dict)  # instruments that moved
    new_orders: list[OrderRow] = field(default_factory=list)
    updated_orders: list[OrderUpdate] = field(default_factory=list)
    trades: list[TradeRow] = field(default_factory=list)
    postings: list[PostingRow] = field(default_factory=list)  # the ledger's (funding on)
    parked: list[tuple[int, str, str, bytes]] = field(default_factory=list)
    poison: set[int] = field(default_factory=set)  # indexes of parked messages
    duplicates: int = 0  # messages holding only batches projected before
    gaps: int = 0  # batches projected past a gap in their instrument's journal


class Fold:
    """Folds a fetch in slices (`feed`), so the writer gets the event loop in between,
    then turns it into rows (`changes`).

    `live` and `seqs` are the projector's, updated in place: the next fetch folds on top
    of this one before this one is even written.
    """

    def __init__(self, position: int, seqs: dict[str, int], live: dict[str, OrderState],
                 instruments: Mapping[str, Instrument],
                 known_gaps: Collection[Gap] = ()) -> None:
        self.result = Changes([], position)
        self.seqs, self.live, self.instruments = seqs, live, instruments
        self.known_gaps = known_gaps
        self.created: set[str] = set()
        self.changed: dict[str, OrderState] = {}  # first touched first: new rows in order
        self._moments: dict[int, datetime] = {}  # one command's events share a timestamp
        self._prices: dict[tuple[int, int], Decimal] = {}

    def feed(self, messages: list[Msg]) -> None:
        """Fold more of the fetch: duplicates skipped, poison parked, orphans counted."""
        changes = self.result
        offset = len(changes.messages)
        changes.messages.extend(messages)
        for index, msg in enumerate(messages, offset):
            batches = self._decode(msg, index)
            folded = [self._fold(batch) for batch in batches]
            if batches and not any(folded):
                changes.duplicates += 1
        if messages:
            changes.position = max(changes.position, messages[-1].metadata.sequence.stream)

    def _fold(self, batch: EventBatch) -> bool:
        """Fold one journaled batch; False if it was projected before (skipped)."""
        changes, seqs, live = self.result, self.seqs, self.live
        last = seqs.get(batch.symbol, 0)
        if batch.seq <= last:
            return False
        if batch.seq != last + 1:
            gap = Gap(batch.symbol, last, batch.seq)
            if gap not in self.known_gaps:
                raise SequenceGap(gap)
            changes.gaps += 1
            log.warning("journal sequence gap", symbol=batch.symbol, after=last,
                        seq=batch.seq)
        seqs[batch.symbol] = changes.seqs[batch.symbol] = batch.seq
        instrument = self.instruments[batch.symbol]
        poster: Poster | None = None
        for event in batch.events:
            if type(event) is TradeExecuted:
                changes.trades.append(self._trade_row(event, instrument))
            elif type(event) in LEDGER_TYPES:
                if poster is None:
                    poster = Poster(batch, self._moment(batch_time(batch)))
                poster.post(event)
                continue
            ids = order_ids(event)
            if type(event) in CREATING:
                self.created.add(ids[0])
            elif not all(map(live.__contains__, ids)):
                metrics.ORPHANS.inc()
                log.warning("event for an unknown order not folded",
                            symbol=batch.symbol, seq=batch.seq, orders=ids)
                continue
            apply(live, event, batch.key_id)
            for order_id in ids:
                self.changed[order_id] = live[order_id]
        if poster is not None:
            changes.postings.extend(poster.rows)
        return True

    def _decode(self, msg: Msg, index: int) -> list[EventBatch]:
        """The message's batches; none if it cannot be projected (it is parked whole)."""
        try:
            batches = batches_of(msg.data)
        except msgspec.DecodeError as error:  # ValidationError too: unknown event types
            reason = storable(f"undecodable: {error}")  # it may quote the message's text
        else:
            unknown = [b.symbol for b in batches if b.symbol not in self.instruments]
            if not unknown:
                return batches
            reason = f"unknown instrument {unknown[0]!r}"
        stream_seq = msg.metadata.sequence.stream
        self.result.parked.append((stream_seq, msg.subject, reason, msg.data))
        self.result.poison.add(index)
        log.error("journal message parked", stream_seq=stream_seq, subject=msg.subject,
                  reason=reason)
        return []

    def changes(self) -> Changes:
        """The rows of everything fed; finished orders leave the live map."""
        result = self.result
        for order_id, state in self.changed.items():
            instrument = self.instruments[state.symbol]
            if order_id in self.created:
                result.new_orders.append(self._order_row(state, instrument))
            else:
                result.updated_orders.append(self._update_row(state, instrument))
            if not state.is_active:
                self.live.pop(order_id, None)
        return result

    def _moment(self, ns: int) -> datetime:
        found = self._moments.get(ns)
        if found is None:
            found = self._moments[ns] = moment(ns)
        return found

    def _price(self, units: int, instrument: Instrument) -> Decimal:
        key = (units, instrument.decimals)
        found = self._prices.get(key)
        if found is None:
            found = self._prices[key] = Decimal(units).scaleb(-instrument.decimals)
        return found

    def _order_row(self, s: OrderState, instrument: Instrument) -> OrderRow:
        # `_value_` is the plain attribute behind `.value` (a slow descriptor in 3.11).
        return OrderRow(
            order_id=storable(s.order_id), symbol=s.symbol, side=s.side._value_,
            type=s.type._value_,
            time_in_force=s.time_in_force._value_, post_only=s.post_only,
            stp=s.stp._value_, user_id=storable_or_none(s.user_id),
            client_order_id=storable_or_none(s.client_order_id),
            price=None if s.price is None else self._price(s.price, instrument),
            quantity=s.quantity, remaining_quantity=s.remaining, traded_quantity=s.traded,
            cancelled_quantity=s.cancelled,
            notional=Decimal(s.notional).scaleb(-instrument.decimals),
            status=s.status._value_,
            cancel_reason=None if s.cancel_reason is None else s.cancel_reason._value_,
            reject_reason=None if s.reject_reason is None else s.reject_reason._value_,
            created_at=self._moment(s.created_at), updated_at=self._moment(s.updated_at),
            seq=s.seq, issued_by_key=s.issued_by_key)

    def _update_row(self, s: OrderState, instrument: Instrument) -> OrderUpdate:
        return OrderUpdate(
            order_id=storable(s.order_id),
            price=None if s.price is None else self._price(s.price, instrument),
            quantity=s.quantity,
            remaining_quantity=s.remaining, traded_quantity=s.traded,
            cancelled_quantity=s.cancelled,
            notional=Decimal(s.notional).scaleb(-instrument.decimals),
            status=s.status._value_,
            cancel_reason=None if s.cancel_reason is None else s.cancel_reason._value_,
            reject_reason=None if s.reject_reason is None else s.reject_reason._value_,
            updated_at=self._moment(s.updated_at), seq=s.seq)

    def _trade_row(self, t: TradeExecuted, instrument: Instrument) -> TradeRow:
        return TradeRow(
            trade_id=Uuid(trade_id(t.symbol, t.trade_no)), symbol=t.symbol,
            trade_no=t.trade_no, seq=t.seq, price=self._price(t.price, instrument),
            quantity=t.quantity, buy_order_id=storable(t.buy_order_id),
            sell_order_id=storable(t.sell_order_id),
            buyer_user_id=storable_or_none(t.buyer_user_id),
            seller_user_id=storable_or_none(t.seller_user_id),
            aggressor_side=t.aggressor_side._value_,
            execution_timestamp=self._moment(t.timestamp))
