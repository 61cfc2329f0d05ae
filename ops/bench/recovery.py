"""Recovery benchmark: how fast svc_orders rebuilds its state from the journal.

Journals the standard workload's first commands (until `--trades` trades) into a fresh
`EXCHANGE` stream on a real nats-server (from ops.stack, in a temporary folder, or the
one named by EX_NATS_URL: its stream is then replaced), with no snapshot, then times
`Sequencer.recover()`: the journal read, decoding, and the engine and order-store folds,
as at every start of svc_orders. The journal holds `--group` commands per message, as
svc_orders writes them under load (group commit). Prints one JSON line: commands
(journaled batches), messages, seconds, commands_per_s, the same per CPU second of this
process, resting orders and live orders after recovery.

    python ../shared/bench/workload.py --n 1000000 --seed 1 --out /tmp/w_1m_s1.jsonl
    .venv/bin/python -m ops.bench.recovery --workload /tmp/w_1m_s1.jsonl --trades 100000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

import nats
import uvloop
from nats.js.errors import NotFoundError

from common import subjects
from common.service import settle_heap
from ops.bench.journaling import GROUP, fresh_stream, journal, journal_payloads, publisher
from ops.stack import NatsServer
from svc_orders import snapshots
from svc_orders.journaling import Journal
from svc_orders.sequencer import Sequencer

ACK_TIMEOUT = 5.0  # seconds (the journal is only read here)


async def run(args: argparse.Namespace, nats_url: str) -> dict[str, object]:
    batches, instruments = journal(args.workload, args.trades)
    payloads = journal_payloads(batches, args.group)
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await fresh_stream(js)
        await publisher(nats_url, payloads)
        with contextlib.suppress(NotFoundError):  # a snapshot would shorten the replay
            await js.delete_object_store(subjects.SNAPSHOT_BUCKET)
        bucket = await snapshots.bucket(js)
        sequencer = Sequencer(js, Journal(nc, ACK_TIMEOUT), bucket, instruments,
                              snapshot_every=len(batches) + 1)
        settle_heap()  # as the service does before it recovers
        started, cpu_started = time.perf_counter(), time.process_time()
        await sequencer.recover()
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    finally:
        await nc.close()
    return {"commands": len(batches), "messages": len(payloads), "group": args.group,
            "seconds": round(seconds, 3), "commands_per_s": round(len(batches) / seconds),
            # This process's CPU: steadier than the wall clock when others share the cores.
            "cpu_seconds": round(cpu, 3), "commands_per_cpu_s": round(len(batches) / cpu),
            "resting_orders": len(sequencer.engine.orders),
            "live_orders": len(sequencer.store.live)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", type=Path, required=True, help="JSON Lines workload")
    parser.add_argument("--group", type=int, default=GROUP,
                        help="commands per journal message (group commit; 1: one each)")
    parser.add_argument("--trades", type=int, default=100_000,
                        help="journal the workload's commands until this many trades")
    args = parser.parse_args()
    uvloop.install()
    nats_url = os.environ.get("EX_NATS_URL")
    if nats_url:
        print(json.dumps(asyncio.run(run(args, nats_url))))
        return
    with tempfile.TemporaryDirectory(prefix="bench_recovery_") as folder, \
            NatsServer(Path(folder) / "nats") as server:
        print(json.dumps(asyncio.run(run(args, server.url))))


if __name__ == "__main__":
    main()
