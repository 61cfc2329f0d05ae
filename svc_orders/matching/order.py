"""A live order as the engine holds it: mutable, slotted, integers only."""

from __future__ import annotations

from common.messages import OrderType, PlaceOrder, Side, Stp, TimeInForce


class Order:
    """One order inside a book. `remaining + traded + cancelled == quantity` always."""

    __slots__ = (
        "cancelled", "client_order_id", "is_buy", "order_id", "post_only", "price",
        "quantity", "remaining", "side", "stp", "symbol", "time_in_force", "timestamp",
        "traded", "type", "user_id",
    )

    def __init__(
        self, *, order_id: str, symbol: str, side: Side, type: OrderType,
        time_in_force: TimeInForce, price: int | None, quantity: int, user_id: str | None,
        client_order_id: str | None, stp: Stp, post_only: bool, timestamp: int,
        remaining: int | None = None, traded: int = 0, cancelled: int = 0,
    ) -> None:
        self.order_id = order_id
        self.symbol = symbol
        self.side = side
        self.is_buy = side is Side.BUY
        self.type = type
        self.time_in_force = time_in_force
        self.price = price
        self.quantity = quantity
        self.remaining = quantity if remaining is None else remaining
        self.traded = traded
        self.cancelled = cancelled
        self.user_id = user_id
        self.client_order_id = client_order_id
        self.stp = stp
        self.post_only = post_only
        self.timestamp = timestamp

    @classmethod
    def from_command(cls, command: PlaceOrder) -> Order:
        return cls(
            order_id=command.order_id, symbol=command.symbol, side=command.side,
            type=command.type, time_in_force=command.time_in_force, price=command.price,
            quantity=command.quantity, user_id=command.user_id,
            client_order_id=command.client_order_id, stp=command.stp,
            post_only=command.post_only, timestamp=command.timestamp,
        )

    @property
    def rests(self) -> bool:
        """Whether an unfilled remainder of this order waits in the book."""
        return self.type is OrderType.LIMIT and self.time_in_force in _RESTING

    def __repr__(self) -> str:
        return (f"Order({self.order_id!r}, {self.side.value} {self.remaining}/{self.quantity}"
                f" @ {self.price}, user={self.user_id!r})")


_RESTING = frozenset((TimeInForce.GTC, TimeInForce.DAY))
