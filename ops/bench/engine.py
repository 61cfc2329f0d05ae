"""Engine benchmark on the standard workload (../shared/bench/README.md).

Pre-parses the JSON Lines into engine commands, then times only `Exchange.submit` over
all of them. A second, untimed run of the same commands on a fresh engine collects the
figures and the tape, and must end in the timed run's exact state. Prints one
JSON line: commands, trades, traded quantity, notional, rejected cancels and modifies,
resting orders, seconds, commands_per_s and the sha256 of the trade tape.

    python ../shared/bench/workload.py --n 1000000 --seed 1 --out /tmp/w_1m_s1.jsonl
    .venv/bin/python -m ops.bench.engine --workload /tmp/w_1m_s1.jsonl
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import time
from pathlib import Path

from common.instruments import DEFAULT_INSTRUMENT, Instrument
from common.messages import CancelOrder, Command, ModifyOrder, TradeExecuted
from ops.bench.workload import parse
from svc_orders.matching import Exchange

GOLDEN_1M_SEED_1 = "1e56b3b43d45cf2d75a13a74a810dcc37f656f251f344df67e1051da53c6e960"


def timed_run(commands: list[Command], exchange: Exchange) -> float:
    """Seconds to submit every command; each batch is dropped as the service drops it
    once journaled (keeping a million of them would time the allocator, not the engine).
    """
    submit = exchange.submit
    started = time.perf_counter()
    for command in commands:
        submit(command)
    return time.perf_counter() - started


def summarise(commands: list[Command], exchange: Exchange,
              instruments: dict[str, Instrument]) -> dict[str, object]:
    """Replay the commands on `exchange` for the figures and the trade tape (untimed)."""
    tape = hashlib.sha256()
    trades = traded = notional = 0
    rejected = {CancelOrder: 0, ModifyOrder: 0}
    for command in commands:
        batch = exchange.submit(command)
        if not batch.seq and type(command) in rejected:
            rejected[type(command)] += 1
        for event in batch.events:
            if type(event) is TradeExecuted:
                price = instruments[event.symbol].format_price(event.price)
                tape.update(f"{event.buy_order_id},{event.sell_order_id},{price},"
                            f"{event.quantity},{event.aggressor_side.value}\n".encode())
                trades += 1
                traded += event.quantity
                notional += event.price * event.quantity
    return {"trades": trades, "traded_quantity": traded,
            "notional": DEFAULT_INSTRUMENT.format_price(notional),
            "rejected_cancels": rejected[CancelOrder],
            "rejected_modifies": rejected[ModifyOrder], "tape_sha256": tape.hexdigest()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", type=Path, required=True)
    args = parser.parse_args()
    commands, instruments = parse(args.workload)
    gc.collect()
    gc.freeze()
    timed = Exchange(instruments)
    seconds = timed_run(commands, timed)
    checked = Exchange(instruments)
    summary = summarise(commands, checked, instruments)
    for exchange in (timed, checked):
        exchange.check()
    if timed.capture() != checked.capture():
        raise SystemExit("the timed and the checked run ended in different states")
    print(json.dumps({
        "commands": len(commands), **summary, "resting_orders": len(timed.orders),
        "seconds": round(seconds, 3), "commands_per_s": round(len(commands) / seconds),
        "golden_match": summary["tape_sha256"] == GOLDEN_1M_SEED_1,
    }))


if __name__ == "__main__":
    main()
