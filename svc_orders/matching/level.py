"""One price of one side of a book: its orders in time priority and their total.

The queue is a dict ``order_id -> Order``, which keeps insertion order: appending and
removing any order are O(1), so a cancelled or filled order leaves the level at once and
the level holds exactly its live orders. Reading the front skips the empty slots removed
orders leave in the dict's table until its next resize (never more than it can hold).

`total` is the sum of the orders' `remaining`. Every change to a queued order goes
through a method here, except a taker's walk over the front (`Book._match`, the hot
path), which trades the orders it meets and then settles the level with one `consume`.
"""

from __future__ import annotations

from collections.abc import Iterator

from svc_orders.matching.order import Order


class Level:
    __slots__ = ("orders", "total")

    def __init__(self, first: Order) -> None:
        self.orders = {first.order_id: first}
        self.total = first.remaining

    def append(self, order: Order) -> None:
        """Queue a live `order` behind every order already here."""
        self.orders[order.order_id] = order
        self.total += order.remaining

    def remove(self, order: Order) -> None:
        """Take out a live `order` from anywhere in the queue (its `remaining` untouched)."""
        del self.orders[order.order_id]
        self.total -= order.remaining

    def fill(self, order: Order, quantity: int) -> None:
        """Trade `quantity` of a queued order; a filled order leaves the queue."""
        order.fill(quantity)
        self.total -= quantity
        if not order.remaining:
            del self.orders[order.order_id]

    def resize(self, order: Order, quantity: int) -> None:
        """Give a queued order a new total quantity, keeping its place."""
        self.total -= order.remaining
        order.resize(quantity)
        self.total += order.remaining

    def consume(self, count: int, quantity: int) -> None:
        """Account for a taker's walk from the front: it took `quantity` in all, and the
        first `count` orders left (filled, or cancelled by self-trade prevention)."""
        orders = self.orders
        for _ in range(count):
            del orders[next(iter(orders))]
        self.total -= quantity

    def __iter__(self) -> Iterator[Order]:
        """The orders, oldest first."""
        return iter(self.orders.values())

    def __len__(self) -> int:
        return len(self.orders)
