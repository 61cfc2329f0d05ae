"""One side of a book: its price levels, and the best price from a lazy heap.

Levels live in a dict ``price -> Level`` (see `level`); a level is deleted the moment
its last order leaves, so the ladder holds exactly the prices with live orders. A
requeued order (modify) is entered again as a new `Order` object, never twice as one.

The heap holds ``sign * price`` keys (``sign`` is -1 for bids so the best bid is the
smallest key) and may keep keys of deleted levels: they are dropped when they reach the
top, and the heap is rebuilt when stale keys outnumber live levels.

Costs: best price O(1) amortised; add O(1), or O(log L) for a new level; remove O(1);
the top n levels O(L log n), each with its total and order count in O(1).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from svc_orders.matching.level import Level
from svc_orders.matching.order import Order

_COMPACT_SLACK = 64


class Ladder:
    __slots__ = ("heap", "levels", "sign")

    def __init__(self, *, bids: bool) -> None:
        self.sign = -1 if bids else 1
        self.levels: dict[int, Level] = {}
        self.heap: list[int] = []

    def best(self) -> int | None:
        """The best price with orders, or None for an empty side."""
        heap, levels, sign = self.heap, self.levels, self.sign
        while heap:
            price = heap[0] * sign
            if price in levels:
                return price
            heapq.heappop(heap)
        return None

    def add(self, order: Order) -> None:
        """Queue a live `order` at the back of its price level."""
        price = order.price
        assert price is not None, order
        level = self.levels.get(price)
        if level is not None:
            level.append(order)
            return
        self.levels[price] = Level(order)
        if len(self.heap) > 2 * len(self.levels) + _COMPACT_SLACK:
            self.heap = [p * self.sign for p in self.levels]
            heapq.heapify(self.heap)
        else:
            heapq.heappush(self.heap, price * self.sign)

    def remove(self, order: Order) -> None:
        """Take a queued order out of its level (its `remaining` untouched)."""
        price = order.price
        assert price is not None, order
        level = self.levels[price]
        level.remove(order)
        if not level.orders:
            del self.levels[price]

    def fill(self, order: Order, quantity: int) -> None:
        """Trade `quantity` of a queued order; a filled order leaves its level."""
        price = order.price
        assert price is not None, order
        level = self.levels[price]
        level.fill(order, quantity)
        if not level.orders:
            del self.levels[price]

    def resize(self, order: Order, quantity: int) -> None:
        """Give a queued order a new total quantity, keeping its place."""
        assert order.price is not None, order
        self.levels[order.price].resize(order, quantity)

    def consume(self, price: int, count: int, quantity: int) -> None:
        """Settle a taker's walk over the front of the level at `price` (`Level.consume`)."""
        level = self.levels[price]
        level.consume(count, quantity)
        if not level.orders:
            del self.levels[price]

    def prices(self) -> list[int]:
        """Every price with orders, best first."""
        return sorted(self.levels, key=self.sign.__mul__)

    def top(self, n: int) -> list[int]:
        """The best `n` prices, best first."""
        return heapq.nsmallest(n, self.levels, key=self.sign.__mul__)

    def orders(self) -> Iterator[Order]:
        """Every queued order in priority order: best price first, oldest first."""
        for price in self.prices():
            yield from self.levels[price]

    def order_count(self) -> int:
        return sum(len(level) for level in self.levels.values())

    def __len__(self) -> int:
        """The number of price levels."""
        return len(self.levels)

