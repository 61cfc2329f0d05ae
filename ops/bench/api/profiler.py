"""A py-spy profile of a process while a block runs."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from ops.bench.harness import STOP_TIMEOUT


@contextlib.contextmanager
def py_spy(path: Path | None, pid: int | None) -> Iterator[None]:
    """Sample `pid` with py-spy into `path` (raw folded stacks) while the block runs;
    nothing without both."""
    if path is None or pid is None:
        yield
        return
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    # 250 samples a second without pausing the process (--nonblocking): enough samples
    # in a 5 s run, and the service runs nearly as fast as unobserved.
    recorder = subprocess.Popen([binary, "record", "-o", str(path), "-f", "raw", "--rate",
                                 "250", "--nonblocking", "--pid", str(pid)],
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        try:
            _, errors = recorder.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            recorder.kill()
            _, errors = recorder.communicate()
        if recorder.returncode != 0 or not path.exists():
            print(f"py-spy failed: {errors.decode(errors='replace')[-500:]}", file=sys.stderr)
