"""What one projection transaction writes: a fetch of journal messages, folded.

Pure and synchronous (no I/O), so the projector prepares the next fetch while the
previous one is being written. The fold is `common.orderstate.apply` over the live
orders, which the projector keeps in memory the way the engine keeps its book: only a
live order can be changed by a later event, and a finished one leaves the map. Rows come
out as `svc_trades.repository` stages them, in the journal's own integers (price units
with the instrument's decimals, nanoseconds), which PostgreSQL converts: records of new
orders and trades, and changes to orders that existed before this fetch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
from nats.aio.msg import Msg

from common.instruments import Instrument
from common.messages import (
    EventBatch,
    OrderAccepted,
    OrderRejected,
    TradeExecuted,
    batch_decoder,
)
from common.orderstate import OrderState, apply, order_ids
from common.views import trade_id
from svc_trades import metrics

log = structlog.get_logger(__name__)

CREATING = (OrderAccepted, OrderRejected)

Row = tuple[Any, ...]


@dataclass
class Changes:
    """One fetch, folded: everything its transaction writes, and where it leaves us."""

    messages: list[Msg]
    position: int  # stream sequence reached
    seqs: dict[str, int] = field(default_factory=dict)  # instruments that moved
    new_orders: list[Row] = field(default_factory=list)
    updated_orders: list[Row] = field(default_factory=list)
    trades: list[Row] = field(default_factory=list)
    parked: list[tuple[int, str, str, bytes]] = field(default_factory=list)
    poison: set[int] = field(default_factory=set)  # indexes of parked messages
    projected: int = 0  # journal batches folded (the rest were duplicates or parked)


class Fold:
    """Folds a fetch in slices (`feed`), so the writer gets the event loop in between,
    then turns it into rows (`changes`).

    `live` and `seqs` are the projector's, updated in place: the next fetch folds on top
    of this one before this one is even written.
    """

    def __init__(self, position: int, seqs: dict[str, int], live: dict[str, OrderState],
                 instruments: Mapping[str, Instrument]) -> None:
        self.result = Changes([], position)
        self.seqs, self.live, self.instruments = seqs, live, instruments
        self.created: set[str] = set()
        self.changed: dict[str, OrderState] = {}  # first touched first: new rows in order

    def feed(self, messages: list[Msg]) -> None:
        """Fold more of the fetch: duplicates skipped, poison parked, orphans counted."""
        changes, seqs, live = self.result, self.seqs, self.live
        offset = len(changes.messages)
        changes.messages.extend(messages)
        for index, msg in enumerate(messages, offset):
            batch = self._decode(msg, index)
            if batch is None:
                continue
            last = seqs.get(batch.symbol, 0)
            if batch.seq <= last:
                continue
            if batch.seq != last + 1:
                metrics.GAPS.inc()
                log.warning("journal sequence gap", symbol=batch.symbol, after=last,
                            seq=batch.seq)
            seqs[batch.symbol] = changes.seqs[batch.symbol] = batch.seq
            changes.projected += 1
            decimals = self.instruments[batch.symbol].decimals
            for event in batch.events:
                if type(event) is TradeExecuted:
                    changes.trades.append(self._trade_row(event, decimals))
                ids = order_ids(event)
                if isinstance(event, CREATING):
                    self.created.add(event.order.order_id)
                elif any(order_id not in live for order_id in ids):
                    metrics.ORPHANS.inc()
                    log.warning("event for an unknown order not folded",
                                symbol=batch.symbol, seq=batch.seq, orders=ids)
                    continue
                apply(live, event)
                for order_id in ids:
                    self.changed[order_id] = live[order_id]
        if messages:
            changes.position = max(changes.position, messages[-1].metadata.sequence.stream)

    def _decode(self, msg: Msg, index: int) -> EventBatch | None:
        try:
            batch = batch_decoder.decode(msg.data)
        except msgspec.DecodeError as error:  # ValidationError too: unknown event types
            reason = f"undecodable: {error}"
        else:
            if batch.symbol in self.instruments:
                return batch
            reason = f"unknown instrument {batch.symbol!r}"
        stream_seq = msg.metadata.sequence.stream
        self.result.parked.append((stream_seq, msg.subject, reason, msg.data))
        self.result.poison.add(index)
        log.error("journal message parked", stream_seq=stream_seq, subject=msg.subject,
                  reason=reason)
        return None

    def changes(self) -> Changes:
        """The rows of everything fed; finished orders leave the live map."""
        result = self.result
        for order_id, state in self.changed.items():
            decimals = self.instruments[state.symbol].decimals
            if order_id in self.created:
                result.new_orders.append(self._order_row(state, decimals))
            else:
                result.updated_orders.append(self._change_row(state, decimals))
            if not state.is_active:
                self.live.pop(order_id, None)
        return result

    @staticmethod
    def _order_row(s: OrderState, decimals: int) -> Row:
        """A new order, in the column order of `repository.ORDER_ROWS`."""
        # `_value_` is the plain attribute behind `.value` (a slow descriptor in 3.11).
        return (s.order_id, s.symbol, s.side._value_, s.type._value_,
                s.time_in_force._value_, s.post_only, s.stp._value_, s.user_id,
                s.client_order_id, s.price, s.quantity, s.remaining, s.traded, s.cancelled,
                str(s.notional), s.status._value_,
                None if s.cancel_reason is None else s.cancel_reason._value_,
                None if s.reject_reason is None else s.reject_reason._value_,
                s.created_at, s.updated_at, s.seq, decimals)

    @staticmethod
    def _change_row(s: OrderState, decimals: int) -> Row:
        """What can change in an existing order, in the column order of
        `repository.CHANGE_ROWS`."""
        return (s.order_id, s.price, s.quantity, s.remaining, s.traded, s.cancelled,
                str(s.notional), s.status._value_,
                None if s.cancel_reason is None else s.cancel_reason._value_,
                None if s.reject_reason is None else s.reject_reason._value_,
                s.updated_at, s.seq, decimals)

    @staticmethod
    def _trade_row(t: TradeExecuted, decimals: int) -> Row:
        """A trade, in the column order of `repository.TRADE_ROWS`."""
        return (trade_id(t.symbol, t.trade_no), t.symbol, t.trade_no, t.seq, t.price,
                t.quantity, t.buy_order_id, t.sell_order_id, t.buyer_user_id,
                t.seller_user_id, t.aggressor_side._value_, t.timestamp, decimals)
