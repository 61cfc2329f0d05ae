"""One side of a book: price levels in FIFO order, and the best price from a lazy heap.

Levels live in a dict ``price -> deque[Order]`` with a live-order count per price in
``counts``; a level is deleted the moment its count reaches zero. Removal is lazy: an
order taken out of the middle of a level is marked dead (``remaining == 0``) and stays in
its deque until matching meets it at the head, so a cancel costs O(1), not a scan.
A requeued order (modify) is entered again as a new `Order` object, never twice as one.

The heap holds ``sign * price`` keys (``sign`` is -1 for bids so the best bid is the
smallest key) and may keep keys of deleted levels: they are dropped when they reach the
top (`best`), and the heap is rebuilt when stale keys outnumber live levels.

Costs: best price O(1) amortised; add O(1), or O(log L) for a new level; remove O(1);
depth of n levels O(L log n + orders in them).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator

from svc_orders.matching.order import Order

_COMPACT_SLACK = 64


class Ladder:
    __slots__ = ("counts", "heap", "levels", "sign")

    def __init__(self, *, bids: bool) -> None:
        self.sign = -1 if bids else 1
        self.levels: dict[int, deque[Order]] = {}
        self.counts: dict[int, int] = {}
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
        """Append a live `order` at the back of its price level."""
        price = order.price
        assert price is not None
        level = self.levels.get(price)
        if level is not None:
            level.append(order)
            self.counts[price] += 1
            return
        self.levels[price] = deque((order,))
        self.counts[price] = 1
        if len(self.heap) > 2 * len(self.levels) + _COMPACT_SLACK:
            self.heap = [p * self.sign for p in self.levels]
            heapq.heapify(self.heap)
        else:
            heapq.heappush(self.heap, price * self.sign)

    def remove(self, order: Order) -> None:
        """Take out a resting order whose `remaining` the caller has just set to 0."""
        price = order.price
        assert price is not None
        assert not order.remaining
        left = self.counts[price] - 1
        if left:
            self.counts[price] = left
        else:
            del self.counts[price]
            del self.levels[price]

    def prices(self) -> list[int]:
        """Every price with orders, best first."""
        return sorted(self.levels, key=self.sign.__mul__)

    def top(self, n: int) -> list[int]:
        """The best `n` prices, best first."""
        return heapq.nsmallest(n, self.levels, key=self.sign.__mul__)

    def queue(self, price: int) -> list[Order]:
        """The live orders at `price`, oldest first."""
        return [order for order in self.levels[price] if order.remaining]

    def orders(self) -> Iterator[Order]:
        """Every live order in priority order: best price first, oldest first."""
        for price in self.prices():
            yield from self.queue(price)

    def __len__(self) -> int:
        return len(self.levels)
