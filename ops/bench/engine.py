"""Engine benchmark on the standard workload (../shared/bench/README.md).

Pre-parses the JSON Lines into engine commands, then times only `Exchange.submit` over
all of them. A second, untimed run of the same commands on a fresh engine collects the
figures and the tape, and must end in the timed run's exact state. Prints one
JSON line: commands, trades, traded quantity, notional, rejected cancels and modifies,
resting orders, seconds, commands_per_s and the sha256 of the trade tape.

    python ../shared/bench/workload.py --n 1000000 --seed 1 --out /tmp/w_1m_s1.jsonl
    .venv/bin/python -m ops.bench.engine --workload /tmp/w_1m_s1.jsonl

`--against REV` compares this engine with the one of git revision REV in the same
process instead: both submit the same chunks of commands in turn (which goes first
alternates), each timed in CPU time, so that load from other work on the machine falls
on both alike. It prints one line per repetition and a summary with the medians; REV's
`svc_orders/matching` runs on this tree's `common`.

`--funding` adds this engine with balances (EX_FUNDING=on), every user of the workload
funded beforehand (untimed) so that nothing is refused: alone, it is the engine timed;
in a comparison, a third engine ("funded") beside REV and this one.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from common.assets import BASE_UNIT, homes
from common.instruments import DEFAULT_INSTRUMENT, Instrument
from common.messages import (
    CancelOrder,
    Command,
    ModifyOrder,
    PlaceOrder,
    TradeExecuted,
    TransferFunds,
)
from ops.bench.workload import parse
from svc_orders.matching import Exchange

GOLDEN_1M_SEED_1 = "1e56b3b43d45cf2d75a13a74a810dcc37f656f251f344df67e1051da53c6e960"
ENGINE = "svc_orders.matching"
CHUNK = 1000  # commands per turn in a comparison: short, so both see the same load



FUNDS = 10**11 * BASE_UNIT  # of every asset for every user: more than any order needs


def funded(commands: list[Command]) -> type[Exchange]:
    """`Exchange` with funding on, every user of `commands` funded at construction."""
    users = sorted({c.user_id for c in commands if type(c) is PlaceOrder and c.user_id})

    def build(instruments: Mapping[str, Instrument]) -> Exchange:
        exchange = Exchange(instruments, funding=True)
        for user in users:
            for asset in homes(instruments):
                exchange.submit(TransferFunds(transfer_id=f"{user}:{asset}", user_id=user,
                                              asset=asset, amount=FUNDS))
        return exchange

    return build  # type: ignore[return-value]  # called like the class, nothing else


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


def engine_at(rev: str, into: Path) -> type[Exchange]:
    """The `Exchange` of git revision `rev`, imported as a package of its own."""
    package = "engine_" + "".join(c if c.isalnum() else "_" for c in rev)
    archive = subprocess.run(["git", "archive", rev, ENGINE.replace(".", "/")],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into / "tree", filter="data")
    (into / package).mkdir()
    for source in (into / "tree" / ENGINE.replace(".", "/")).glob("*.py"):
        (into / package / source.name).write_text(source.read_text().replace(ENGINE, package))
    sys.path.insert(0, str(into))
    exchange: type[Exchange] = importlib.import_module(package).Exchange
    return exchange


def compare(commands: list[Command], instruments: Mapping[str, Instrument],
            engines: dict[str, type[Exchange]], reps: int) -> None:
    """Print commands/s (CPU) of each engine per repetition, then medians and ratios."""
    chunks = [commands[i:i + CHUNK] for i in range(0, len(commands), CHUNK)]
    rates: dict[str, list[float]] = {name: [] for name in engines}
    for rep in range(reps):
        submits = {name: engine(instruments).submit for name, engine in engines.items()}
        spent = dict.fromkeys(engines, 0.0)
        for number, chunk in enumerate(chunks):
            turns = list(submits.items())
            for name, submit in turns if (number + rep) % 2 else reversed(turns):
                started = time.process_time()
                for command in chunk:
                    submit(command)
                spent[name] += time.process_time() - started
        for name in engines:
            rates[name].append(len(commands) / spent[name])
        print(json.dumps({"rep": rep, **{name: round(rates[name][-1]) for name in engines}}))
    first, *others = engines
    print(json.dumps({
        "chunk": CHUNK, "reps": reps,
        **{f"{name}_median": round(statistics.median(rates[name])) for name in engines},
        **{f"{name}/{first}": round(statistics.median(
            [mine / theirs for mine, theirs in zip(rates[name], rates[first], strict=True)]),
            3) for name in others}}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", type=Path, required=True)
    parser.add_argument("--against", metavar="REV", help="compare with the engine of REV")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of a comparison")
    parser.add_argument("--funding", action="store_true", help="balances on (see above)")
    args = parser.parse_args()
    commands, instruments = parse(args.workload)
    if args.against:
        with tempfile.TemporaryDirectory() as temp:
            engines = {args.against: engine_at(args.against, Path(temp)), "this": Exchange}
            if args.funding:
                engines["funded"] = funded(commands)
            gc.collect()
            gc.freeze()
            compare(commands, instruments, engines, args.reps)
        return
    engine = funded(commands) if args.funding else Exchange
    timed = engine(instruments)
    gc.collect()
    gc.freeze()
    seconds = timed_run(commands, timed)
    checked = engine(instruments)
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
