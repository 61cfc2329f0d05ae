"""`python -m svc_trades`: the trade service on EX_TRADES_PORT (default 8001)."""

from __future__ import annotations

import uvloop
from aiohttp import web

from common.config import load_settings
from common.logs import configure_logging
from svc_trades.app import create_app


def main() -> None:
    settings = load_settings()
    configure_logging(settings)
    uvloop.install()
    web.run_app(create_app(settings), host=settings.host, port=settings.trades_port,
                access_log=None, print=None)


if __name__ == "__main__":
    main()
