"""One price of one side of a book: its orders in time priority and their total.

A level is a dict ``order_id -> Order``, which keeps insertion order: appending and
removing any order are O(1), so a cancelled or filled order leaves the level at once and
the level holds exactly its live orders. Reading the front skips the empty slots removed
orders leave in the dict's table until its next resize (never more than it can hold).
It *is* a dict rather than holding one so that finding, reading and walking it run at C
speed with one object less to reach on every command.

`total` is the sum of the orders' `remaining`. Every change goes through a method here
(never through the dict's own setters), except a taker's walk over the front
(`Book._match`, the hot path): it reads `values()`, trades the orders it meets, then
either drops the whole level (it took every order) or settles it with one `consume`.
The methods that take orders out answer whether the level is now empty, so that the
book can drop it from its ladder without asking again.
"""

from __future__ import annotations

from svc_orders.matching.order import Order


class Level(dict[str, Order]):
    __slots__ = ("total",)

    def __init__(self, first: Order) -> None:
        super().__init__(((first.order_id, first),))
        self.total = first.remaining

    def append(self, order: Order) -> None:
        """Queue a live `order` behind every order already here."""
        self[order.order_id] = order
        self.total += order.remaining

    def remove(self, order: Order) -> bool:
        """Take out a live `order` from anywhere in the queue (its `remaining` untouched);
        True if the level is now empty."""
        del self[order.order_id]
        self.total -= order.remaining
        return not self

    def fill(self, order: Order, quantity: int) -> bool:
        """Trade `quantity` of a queued order, a filled order leaves the queue; True if
        the level is now empty."""
        order.fill(quantity)
        self.total -= quantity
        if not order.remaining:
            del self[order.order_id]
        return not self

    def resize(self, order: Order, quantity: int) -> None:
        """Give a queued order a new total quantity, keeping its place."""
        self.total -= order.remaining
        order.resize(quantity)
        self.total += order.remaining

    def consume(self, count: int, quantity: int) -> bool:
        """Account for a taker's walk from the front: it took `quantity` in all, and the
        first `count` orders left (filled, or cancelled by self-trade prevention); True
        if the level is now empty."""
        self.total -= quantity
        while count:  # most often 0 or 1
            del self[next(iter(self))]
            count -= 1
        return not self
