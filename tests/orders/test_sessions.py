"""When DAY orders expire: the next session close in UTC."""

from datetime import UTC, datetime

import pytest

from svc_orders.sessions import seconds_until


@pytest.mark.parametrize(("now", "close", "seconds"), [
    (datetime(2026, 11, 24, 20, 59, 30, tzinfo=UTC), "21:00", 30.0),
    (datetime(2026, 11, 24, 21, 0, 0, tzinfo=UTC), "21:00", 86_400.0),
    (datetime(2026, 11, 24, 21, 0, 1, tzinfo=UTC), "21:00", 86_399.0),
    (datetime(2026, 12, 31, 23, 30, tzinfo=UTC), "00:15", 2_700.0),
])
def test_next_session_close(now: datetime, close: str, seconds: float) -> None:
    assert seconds_until(close, now) == seconds
