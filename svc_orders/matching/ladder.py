"""One side of a book: its price levels, and the best price from a lazy heap.

Levels live in a dict ``price -> Level`` (see `level`). `open` makes a level and keys
it in the heap; the book changes orders through the level's methods and deletes a level
the moment one reports it empty, so the ladder holds exactly the prices with live
orders. A requeued order (modify) is entered again as a new `Order` object, never twice
as one.

The heap holds ``sign * price`` keys (``sign`` is -1 for bids so the best bid is the
smallest key) and may keep keys of deleted levels: they are dropped when they reach the
top, and the heap is rebuilt when stale keys outnumber live levels.

Costs: best price O(1) amortised; a new level O(log L) (an order joining or leaving an
existing level is O(1), in `Level`); the top n levels O(L log n), each with its total
and order count in O(1).
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

    def open(self, order: Order) -> None:
        """A new level at `order`'s price (none there yet) holding `order`."""
        price = order.price
        assert price is not None, order
        assert price not in self.levels, order
        self.levels[price] = Level(order)
        if len(self.heap) > 2 * len(self.levels) + _COMPACT_SLACK:
            self.heap = [p * self.sign for p in self.levels]
            heapq.heapify(self.heap)
        else:
            heapq.heappush(self.heap, price * self.sign)

    def prices(self) -> list[int]:
        """Every price with orders, best first."""
        return sorted(self.levels, key=self.sign.__mul__)

    def top(self, n: int) -> list[int]:
        """The best `n` prices, best first."""
        return heapq.nsmallest(n, self.levels, key=self.sign.__mul__)

    def orders(self) -> Iterator[Order]:
        """Every queued order in priority order: best price first, oldest first."""
        for price in self.prices():
            yield from self.levels[price].values()

    def order_count(self) -> int:
        return sum(len(level) for level in self.levels.values())

    def __len__(self) -> int:
        """The number of price levels."""
        return len(self.levels)

