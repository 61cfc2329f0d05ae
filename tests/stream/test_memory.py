"""svc_stream hands memory back after many clients leave, and only then."""

from __future__ import annotations

import asyncio

import pytest

from svc_stream import memory
from svc_stream.endpoints import Capacity


async def _looks(capacity: Capacity, looks: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Run the trimmer for about `looks` looks; the pads it was called with."""
    monkeypatch.setattr(memory, "EVERY", 0.01)
    calls: list[int] = []

    def trim(pad: int) -> int:
        calls.append(pad)
        return 1

    task = asyncio.get_running_loop().create_task(memory.trim_after_departures(capacity, trim))
    await asyncio.sleep(0.01 * looks + 0.005)
    task.cancel()
    return calls


async def test_memory_is_handed_back_once_after_departures(
        monkeypatch: pytest.MonkeyPatch) -> None:
    capacity = Capacity(limit=5000)
    for _ in range(memory.DEPARTURES + 5):  # clients come and go
        with capacity.admit():
            pass
    with capacity.admit():
        assert capacity.peak == 1
    held = [capacity.admit() for _ in range(memory.DEPARTURES + 5)]
    for place in held:
        place.__enter__()
    for place in held:
        place.__exit__(None, None, None)
    assert (capacity.peak, capacity.open) == (memory.DEPARTURES + 5, 0)
    assert await _looks(capacity, 5, monkeypatch) == [0]
    assert capacity.peak == 0


async def test_a_steady_number_of_clients_never_trims(monkeypatch: pytest.MonkeyPatch) -> None:
    capacity = Capacity(limit=5000)
    capacity.peak, capacity.open = 300, 300 - memory.DEPARTURES + 1
    assert await _looks(capacity, 5, monkeypatch) == []


def test_glibc_trim_is_found_here() -> None:
    trim = memory.malloc_trim()
    assert trim is not None
    assert trim(0) in (0, 1)
