"""The trade tape as a WebSocket client sees it through a fault: /ws/trades/, connected
before the first order, kept open throughout, every message's trades recorded."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Tape:
    http: aiohttp.ClientSession
    url: str  # of /ws/trades/
    trades: list[dict[str, Any]] = field(default_factory=list)
    closed: str | None = None  # why the connection ended, if it did
    _reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ws = await self.http.ws_connect(self.url, heartbeat=5.0)
        first = json.loads(await ws.receive_str(timeout=5))
        assert (first["type"], first["trades"]) == ("snapshot", []), first
        self._reader = asyncio.create_task(self._read(ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async with ws:
            async for message in ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    self.trades.extend(json.loads(message.data)["trades"])
            self.closed = f"closed with {ws.close_code}: {ws.exception() or ''}"

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
