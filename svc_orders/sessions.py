"""Session close: DAY orders of an instrument expire at its `session_close` (UTC)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import structlog

from common.instruments import Instrument
from common.messages import ExpireOrders
from svc_orders.sequencer import Sequencer, Unavailable

log = structlog.get_logger(__name__)
RETRY_SECONDS = 1.0


def seconds_until(close: str, now: datetime) -> float:
    """Seconds from `now` to the next "HH:MM" UTC (tomorrow's if today's has passed)."""
    hour, minute = (int(part) for part in close.split(":"))
    target = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if target <= now:
        target += timedelta(days=1)
    return (target - now).total_seconds()


async def expire_at_session_close(sequencer: Sequencer,
                                  instruments: Mapping[str, Instrument]) -> None:
    """At each instrument's close, expire its DAY orders (retrying on 503); runs for as
    long as the service if any instrument has a close, and returns at once if none has."""
    closing = {symbol: i.session_close for symbol, i in instruments.items() if i.session_close}
    while closing:
        now = datetime.now(UTC)
        symbol, close = min(closing.items(), key=lambda item: seconds_until(item[1], now))
        await asyncio.sleep(seconds_until(close, now))
        while True:
            try:
                outcome = await sequencer.submit(
                    ExpireOrders(symbol=symbol, timestamp=time.time_ns()))
                assert outcome.batch is not None, "an expiry is never a repeat"
                log.info("session closed", symbol=symbol, expired=len(outcome.batch.events))
                break
            except Unavailable:
                await asyncio.sleep(RETRY_SECONDS)
        await asyncio.sleep(1.0)  # past this minute, so the next close is tomorrow's
