"""What auth on adds to svc_orders' market data, per journaled batch, on the standard
workload (../shared/bench/README.md): the per-user `md.orders` messages (order views,
fills, JSON, subject names) and the public trades of `md.trades`.

Runs the engine and the order store over the workload untimed, and times only what
`MarketData` does with each batch once auth is on, as its publisher task does it right
after the batch is journaled (every order current: none left to a later command), with
every user watched: the worst case. Users nobody watches cost a set lookup; with auth off
none of it runs. Prints one JSON line.

    python ../shared/bench/workload.py --n 200000 --seed 1 --out /tmp/w_200k_s1.jsonl
    .venv/bin/python -m ops.bench.user_orders --workload /tmp/w_200k_s1.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import subjects
from common.messages import PlaceOrder, TradeExecuted
from common.views import json_encoder, public_trade, trade_view
from ops.bench.workload import parse
from svc_orders.marketdata import user_messages
from svc_orders.matching import Exchange
from svc_orders.store import OrderStore


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--workload", type=Path, required=True)
    args = parser.parse_args()
    commands, instruments = parse(args.workload)
    exchange, store = Exchange(instruments), OrderStore()
    everyone = {command.user_id for command in commands
                if type(command) is PlaceOrder and command.user_id is not None}
    batches = messages = trades = 0
    private = public = 0.0
    for command in commands:
        batch = exchange.submit(command)
        if not batch.seq:
            continue  # refused: never journaled, never published
        store.apply(batch)
        instrument = instruments[batch.symbol]
        views = [trade_view(event, instrument) for event in batch.events
                 if type(event) is TradeExecuted]
        started = time.perf_counter()
        for user_id, message in user_messages(batch, views, store.get, instrument,
                                                   everyone).items():
            json_encoder.encode(message)
            subjects.user_orders(user_id)
            messages += 1
        between = time.perf_counter()
        json_encoder.encode([public_trade(view) for view in views])
        public += time.perf_counter() - between
        private += between - started
        batches += 1
        trades += len(views)
    print(json.dumps({
        "batches": batches, "trades": trades, "user_messages": messages,
        "private_us_per_batch": round(private / batches * 1e6, 2),
        "public_trades_us_per_batch": round(public / batches * 1e6, 2),
        "private_seconds": round(private, 3)}))


if __name__ == "__main__":
    main()
