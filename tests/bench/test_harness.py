"""The benchmarks' shared helpers."""

from contextlib import ExitStack
from pathlib import Path

from ops.bench.harness import given_or_started, percentile
from ops.stack import NatsServer


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
