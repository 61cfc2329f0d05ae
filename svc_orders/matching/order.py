"""A live order as the engine holds it: mutable, slotted, integers only."""

from __future__ import annotations

import msgspec

from common.messages import OrderType, PlaceOrder, Side, Stp, TimeInForce, remaining_quantity


class Order(msgspec.Struct, array_like=True, gc=False, eq=False):
    """One order inside a book. `remaining + traded + cancelled == quantity` always.

    `placed` is the command that created it (its static fields: side, user, time in
    force ...); `price` and `quantity` are the current ones, which a modify may change.
    A msgspec Struct without GC tracking: cheap to create, invisible to the cyclic
    collector however many rest, and written to the engine's captured state as it is.
    """

    placed: PlaceOrder
    order_id: str
    is_buy: bool
    price: int | None
    quantity: int
    remaining: int
    traded: int = 0
    cancelled: int = 0

    @classmethod
    def new(cls, placed: PlaceOrder) -> Order:
        """The order as `placed` asks, before any fill."""
        return cls(placed, placed.order_id, placed.side is Side.BUY, placed.price,
                   placed.quantity, placed.quantity)

    def requeued(self, price: int | None, quantity: int) -> Order:
        """A fresh queue entry for this order at a new price and/or total quantity."""
        traded, cancelled = self.traded, self.cancelled
        return Order(self.placed, self.order_id, self.is_buy, price, quantity,
                     remaining_quantity(quantity, traded, cancelled), traded, cancelled)

    def resize(self, quantity: int) -> None:
        """Make `quantity` the new total: what is neither traded nor cancelled remains."""
        self.quantity = quantity
        self.remaining = remaining_quantity(quantity, self.traded, self.cancelled)

    def fill(self, quantity: int) -> None:
        self.traded += quantity
        self.remaining -= quantity

    def cancel(self) -> int:
        """Cancel the whole remainder and return it."""
        quantity = self.remaining
        self.cancelled += quantity
        self.remaining = 0
        return quantity

    @property
    def balanced(self) -> bool:
        """Conservation: `remaining + traded + cancelled == quantity`."""
        return self.remaining + self.traded + self.cancelled == self.quantity

    @property
    def rests(self) -> bool:
        """Whether an unfilled remainder of this order waits in the book."""
        return self.placed.type is OrderType.LIMIT and self.placed.time_in_force in _RESTING

    @property
    def user_id(self) -> str | None:
        return self.placed.user_id

    @property
    def symbol(self) -> str:
        return self.placed.symbol

    @property
    def side(self) -> Side:
        return self.placed.side

    @property
    def type(self) -> OrderType:
        return self.placed.type

    @property
    def time_in_force(self) -> TimeInForce:
        return self.placed.time_in_force

    @property
    def stp(self) -> Stp:
        return self.placed.stp

    @property
    def post_only(self) -> bool:
        return self.placed.post_only

    def __repr__(self) -> str:
        return (f"Order({self.order_id!r}, {self.side.value} {self.remaining}/{self.quantity}"
                f" @ {self.price}, user={self.user_id!r})")


_RESTING = (TimeInForce.GTC, TimeInForce.DAY)
