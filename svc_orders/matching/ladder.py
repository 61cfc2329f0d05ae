"""One side of a book: price levels in FIFO order, and the best price from a lazy heap.

Levels live in a dict ``price -> deque[Order]``; a level is deleted the moment it empties.
The heap holds ``sign * price`` keys (``sign`` is -1 for bids so the best bid is the
smallest key) and may keep keys of deleted levels: they are dropped when they reach the
top (`best`), and the heap is rebuilt when stale keys outnumber live levels.

Costs: best price O(1) amortised; add O(1), or O(log L) for a new level; remove O(k) in a
level of k orders; depth of n levels O(L log n).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator

from svc_orders.matching.order import Order

_COMPACT_SLACK = 64


class Ladder:
    __slots__ = ("heap", "levels", "sign")

    def __init__(self, *, bids: bool) -> None:
        self.sign = -1 if bids else 1
        self.levels: dict[int, deque[Order]] = {}
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
        """Append `order` at the back of its price level."""
        price = order.price
        assert price is not None
        level = self.levels.get(price)
        if level is not None:
            level.append(order)
            return
        self.levels[price] = deque((order,))
        if len(self.heap) > 2 * len(self.levels) + _COMPACT_SLACK:
            self.heap = [p * self.sign for p in self.levels]
            heapq.heapify(self.heap)
        else:
            heapq.heappush(self.heap, price * self.sign)

    def remove(self, order: Order) -> None:
        """Take `order` out of its level (it must be there)."""
        price = order.price
        assert price is not None
        level = self.levels[price]
        level.remove(order)
        if not level:
            del self.levels[price]

    def prices(self) -> list[int]:
        """Every price with orders, best first."""
        return sorted(self.levels, key=self.sign.__mul__)

    def top(self, n: int) -> list[int]:
        """The best `n` prices, best first."""
        return heapq.nsmallest(n, self.levels, key=self.sign.__mul__)

    def orders(self) -> Iterator[Order]:
        """Every order in priority order: best price first, oldest first."""
        for price in self.prices():
            yield from self.levels[price]

    def __len__(self) -> int:
        return len(self.levels)
