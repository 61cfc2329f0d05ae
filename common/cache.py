"""Redis key names. Redis holds caches only: losing it loses no data."""

from __future__ import annotations

RECENT_TRADES = 100  # trades kept per symbol
BOOK_LEVELS = 100  # levels per side in the cached book


def book_key(symbol: str) -> str:
    """JSON `BookMessage` (type "snapshot") with the top `BOOK_LEVELS` levels per side."""
    return f"ex:book:{symbol}"


def trades_key(symbol: str) -> str:
    """Redis list of JSON `TradeView`s, newest first, at most `RECENT_TRADES`."""
    return f"ex:trades:{symbol}"
