"""The benchmarks' shared helpers."""

from contextlib import ExitStack
from pathlib import Path

import pytest

from ops.bench import harness
from ops.bench.harness import given_or_started, percentile, ready, wait_until
from ops.stack import NatsServer, free_port


def test_given_or_started_starts_a_server_only_when_no_address_is_given(
        tmp_path: Path) -> None:
    with ExitStack() as stack:
        assert given_or_started(stack, "nats://elsewhere:4222",
                                lambda: NatsServer(tmp_path / "unused")) == (
            "nats://elsewhere:4222", None)
        assert not (tmp_path / "unused").exists()
        url, pid = given_or_started(stack, None, lambda: NatsServer(tmp_path / "nats"))
        assert url.startswith("nats://127.0.0.1:")
        assert pid is not None
        assert Path(f"/proc/{pid}").exists()
    assert not Path(f"/proc/{pid}").exists()  # stopped (and reaped) with the stack


def test_percentile_picks_from_the_sorted_sample_and_is_zero_without_one() -> None:
    ordered = [float(value) for value in range(1, 101)]
    assert percentile(ordered, 0.5) == 51.0
    assert percentile(ordered, 0.99) == 100.0
    assert percentile(ordered, 1.0) == 100.0
    assert percentile([], 0.99) == 0.0


def test_wait_until_polls_until_the_check_holds_and_names_what_never_did(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = iter([False, False, True])
    wait_until("three", lambda: next(calls), poll=0.001)
    assert next(calls, None) is None  # it stopped at the first True
    assert not ready(free_port())  # nothing listens there: one probe, no error
    log = tmp_path / "service.log"
    log.write_text("the last words\n")
    monkeypatch.setattr(harness, "READY_TIMEOUT", 0.02)
    with pytest.raises(SystemExit, match=r"(?s)not up within .*the last words"):
        wait_until("up", lambda: False, poll=0.001, log=log)
