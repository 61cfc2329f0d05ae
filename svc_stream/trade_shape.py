"""Trades as svc_stream relays them: the full view with auth off, the public one (no user
or order ids) with auth on.

svc_orders publishes and caches trades in the shape of its mode; svc_stream checks every
trade, live or cached, against the shape of its own mode, so a publisher left in the other
mode is dropped and counted, never relayed: with auth on, no id reaches a client. A
checked trade keeps the bytes svc_orders wrote and is sent on as they are.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import msgspec

from common.views import PublicTradesMessage, PublicTradeView, TradesMessage, TradeView


class Trade(NamedTuple):
    """One cached trade, checked: its seq, and its JSON as cached."""

    seq: int
    json: msgspec.Raw


class TradesFrame(msgspec.Struct, kw_only=True):
    """A trades message made here (snapshots, catch-ups) from cached trades: the JSON of
    `TradesMessage` (or its public twin), field for field, without re-encoding a trade."""

    type: Literal["snapshot", "update"]
    channel: Literal["trades"] = "trades"
    symbol: str
    seq: int
    trades: list[msgspec.Raw]


class TradeShape:
    def __init__(self, public: bool) -> None:
        self.public = public
        self._trade: msgspec.json.Decoder[TradeView] | msgspec.json.Decoder[PublicTradeView]
        self._update: (msgspec.json.Decoder[TradesMessage]
                       | msgspec.json.Decoder[PublicTradesMessage])
        if public:
            self._trade = msgspec.json.Decoder(PublicTradeView)
            self._update = msgspec.json.Decoder(PublicTradesMessage)
        else:
            self._trade = msgspec.json.Decoder(TradeView)
            self._update = msgspec.json.Decoder(TradesMessage)

    def trade(self, data: bytes | str) -> Trade:
        """A cached trade; msgspec.DecodeError if it is not of this shape."""
        return Trade(self._trade.decode(data).seq, msgspec.Raw(data))

    def update(self, data: bytes) -> TradesMessage | PublicTradesMessage:
        """An `md.trades` message; msgspec.DecodeError if it is not of this shape."""
        return self._update.decode(data)


def frame(kind: Literal["snapshot", "update"], symbol: str, seq: int,
          trades: list[Trade]) -> TradesFrame:
    return TradesFrame(type=kind, symbol=symbol, seq=seq, trades=[t.json for t in trades])
