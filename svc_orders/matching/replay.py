"""Rebuild a book from journaled events instead of commands.

Recovery replays the journal after the newest captured state; the batches hold what
matching decided, so replay only re-applies those decisions and never matches again.
Within a batch the order being entered (new, or re-entered by a modify) is the *pending*
taker: it rests at the end of the batch if it still has quantity and nothing cancelled it.
Rejections and balance events change no book.
"""

from __future__ import annotations

from common.messages import (
    EventBatch,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderModified,
    Side,
    TradeExecuted,
)
from svc_orders.matching.book import Book
from svc_orders.matching.order import Order


def apply_batch(book: Book, batch: EventBatch) -> None:
    """Apply one journaled batch of `book`'s instrument; seq must follow the book's."""
    if batch.seq != book.seq + 1:
        raise ValueError(f"{book.symbol}: batch seq {batch.seq} does not follow {book.seq}")
    pending: Order | None = None
    trade_no = book.trade_no
    for event in batch.events:  # exact types, most frequent first (see orderstate)
        if type(event) is TradeExecuted:
            maker_id = (event.sell_order_id if event.aggressor_side is Side.BUY
                        else event.buy_order_id)
            book.fill(book.orders[maker_id], event.quantity)
            assert pending is not None, "trade without a taker"
            pending.fill(event.quantity)
            trade_no = event.trade_no
        elif type(event) is OrderAccepted:
            pending = Order.new(event.order)
        elif type(event) is OrderCancelled or type(event) is OrderExpired:
            if pending is not None and pending.order_id == event.order_id:
                order, pending = pending, None
            else:
                order = book.orders[event.order_id]
                book.unrest(order)
            cancelled = order.cancel()
            assert cancelled == event.quantity, (order, event)
        elif type(event) is OrderModified:
            order = book.orders[event.order_id]
            if event.requeued:
                book.unrest(order)
                pending = order.requeued(event.price, event.quantity)
            else:
                book.resize(order, event.quantity)
    if pending is not None and pending.remaining and pending.rests:
        book.rest(pending)
    book.resume(batch.seq, trade_no)
