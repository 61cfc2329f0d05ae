"""Rebuild a book from journaled events instead of commands.

Recovery replays the journal after the newest snapshot; the batches hold what matching
decided, so replay only re-applies those decisions and never matches again. Within a
batch the order being entered (new, or re-entered by a modify) is the *pending* taker:
it rests at the end of the batch if it still has quantity and nothing cancelled it.
"""

from __future__ import annotations

from common.messages import (
    CommandRejected,
    EventBatch,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderModified,
    OrderRejected,
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
    for event in batch.events:
        match event:
            case OrderAccepted():
                pending = Order.new(event.order)
            case TradeExecuted():
                maker_id = (event.sell_order_id if event.aggressor_side is Side.BUY
                            else event.buy_order_id)
                _fill(book, book.orders[maker_id], event.quantity)
                assert pending is not None, "trade without a taker"
                pending.traded += event.quantity
                pending.remaining -= event.quantity
                book.trade_no = event.trade_no
            case OrderModified():
                order = book.orders[event.order_id]
                if event.requeued:
                    pending = order.requeued(event.price, event.quantity)
                    order.remaining = 0
                    _unrest(book, order)
                else:
                    order.quantity = event.quantity
                    order.remaining = event.quantity - order.traded - order.cancelled
            case OrderCancelled() | OrderExpired():
                taker = pending is not None and pending.order_id == event.order_id
                order = pending if taker and pending else book.orders[event.order_id]
                order.cancelled += event.quantity
                order.remaining -= event.quantity
                if taker:
                    pending = None
                else:
                    _unrest(book, order)
            case OrderRejected() | CommandRejected():
                pass
    if pending is not None and pending.remaining and pending.rests:
        (book.bids if pending.is_buy else book.asks).add(pending)
        book.orders[pending.order_id] = pending
    book.seq = batch.seq


def _fill(book: Book, maker: Order, quantity: int) -> None:
    maker.traded += quantity
    maker.remaining -= quantity
    if not maker.remaining:
        _unrest(book, maker)


def _unrest(book: Book, order: Order) -> None:
    """Take out a resting order whose remaining has just dropped to 0."""
    (book.bids if order.is_buy else book.asks).remove(order)
    del book.orders[order.order_id]
