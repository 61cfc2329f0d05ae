"""The matching engine: synchronous, integer prices, no I/O (see `exchange`)."""

from svc_orders.matching.exchange import Exchange
from svc_orders.matching.order import Order

__all__ = ["Exchange", "Order"]
