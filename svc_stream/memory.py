"""Give memory back to the system once many clients have left.

Every client holds buffers, a queue and aiohttp's per-connection objects. When 2,000 of
them closed, Python freed the objects, yet svc_stream's resident memory stayed at its
peak (55 -> 113 -> 113 MB): glibc keeps freed heap pages for reuse. `malloc_trim` hands
the free ones back. It runs only after departures (the peak number of clients since the
last trim fell by `DEPARTURES`), looked at every `EVERY` seconds, so a steady service
never pays for it. Elsewhere than glibc there is nothing to call, and nothing runs.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
from collections.abc import Callable

import structlog

from svc_stream.endpoints import Capacity

EVERY = 5.0  # seconds between looks at the number of clients
DEPARTURES = 100  # clients gone since the peak before memory is handed back

log = structlog.get_logger()


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


async def trim_after_departures(capacity: Capacity, trim: Callable[[int], int]) -> None:
    """Each `EVERY` seconds: if `DEPARTURES` clients left since the peak, collect the
    cycles they left (aiohttp's connections hold some) and hand free pages back."""
    while True:
        await asyncio.sleep(EVERY)
        if capacity.peak - capacity.open >= DEPARTURES:
            departed = capacity.peak - capacity.open
            gc.collect()
            trim(0)
            capacity.peak = capacity.open
            log.info("memory handed back", departed=departed)
