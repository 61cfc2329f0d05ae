"""The floor: svc_orders' own POST /orders/ with no exchange behind it.
`python -m ops.bench.api.floor PORT`, with svc_orders' EX_ variables.

The same edge, route, body validation, answer and counters as svc_orders (the handler
is `svc_orders.api.place_order` itself), but its sequencer accepts every order at once,
resting and unmatched: no engine, journal, group commit, market data or NATS. Its CPU
per request over the ceiling's is what the order API's contract costs in Python,
whatever the exchange does; svc_orders' over the floor's is the exchange.
"""

from __future__ import annotations

import sys
from typing import cast

import uvloop
from aiohttp import web

from common.config import load_settings
from common.cors import allow_page
from common.http import add_probes, add_routes, new_app
from common.instruments import load_instruments
from common.messages import Command, EventBatch, PlaceOrder
from common.orderstate import OrderState
from common.service import settle_heap
from ops.stack import HOST
from svc_orders import api
from svc_orders.sequencer import Outcome, Sequencer


class AcceptAll:
    """Stands in for the sequencer: every order is placed and rests, one seq each."""

    def __init__(self) -> None:
        self.seq = 0

    async def submit(self, command: Command, named: OrderState | None = None,
                     key_id: str | None = None) -> Outcome:
        assert isinstance(command, PlaceOrder), "the floor takes POST /orders/ only"
        self.seq += 1
        return Outcome(batch=EventBatch(symbol=command.symbol, seq=self.seq, events=[]),
                       order=OrderState.placed(command, self.seq, key_id))


def floor_server(port: int) -> None:
    """svc_orders' order route and edge in front of `AcceptAll`, on uvloop."""
    settings = load_settings()
    app = new_app(settings.max_body_bytes)
    allow_page(app, settings)
    app[api.INSTRUMENTS] = load_instruments(settings.instruments_file)
    app[api.SEQUENCER] = cast(Sequencer, AcceptAll())  # only `submit` is called
    add_routes(app, [("POST", "/orders/", api.place_order)])
    add_probes(app, lambda: True, settings)
    settle_heap()  # as svc_orders starts
    uvloop.install()
    web.run_app(app, host=HOST, port=port, access_log=None, print=None)


if __name__ == "__main__":
    floor_server(int(sys.argv[1]))
