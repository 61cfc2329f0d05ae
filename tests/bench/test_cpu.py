"""The benchmarks' CPU accounting counts a server's workers, finished or running."""

import subprocess
import sys
import time

from ops.bench import cpu

BURN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"

# A "server" that runs one worker to its end (as PostgreSQL's backends come and go),
# then keeps one running, then waits to be told to stop.
SERVER = f"""
import subprocess, sys
subprocess.run([sys.executable, "-c", {BURN.format(seconds=0.3)!r}], check=True)
running = subprocess.Popen([sys.executable, "-c", {BURN.format(seconds=0.3)!r}
                            + "print('burnt', flush=True)\\nimport time\\ntime.sleep(60)"],
                           stdout=subprocess.PIPE)
running.stdout.readline()
print("ready", flush=True)
sys.stdin.readline()
running.kill()
"""


def test_tree_seconds_counts_finished_and_running_workers() -> None:
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert server.stdout.readline() == "ready\n"
        own = cpu.process_seconds(server.pid)
        with_workers = cpu.tree_seconds(server.pid)
        assert with_workers - own >= 0.5  # both workers' 0.3 s, less clock-tick rounding
    finally:
        server.communicate("stop\n", timeout=10)


def test_meter_sees_this_process_work_and_leaves_out_servers_it_cannot_see() -> None:
    meter = cpu.Meter({"gone": None}, this="me")
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    spent = meter.seconds()
    assert spent["me"] >= 0.15
    assert "gone" not in spent
    assert spent["machine"] >= spent["me"] - 0.05
