"""How every service process starts: settings from EX_, logging, uvloop, the app."""

from __future__ import annotations

import gc
from collections.abc import Callable

import uvloop
from aiohttp import web

from common.config import Settings, load_settings
from common.logs import configure_logging


def serve(create_app: Callable[[Settings], web.Application],
          port: Callable[[Settings], int]) -> None:
    """Run the app made by `create_app` on `port(settings)` until SIGINT/SIGTERM."""
    settings = load_settings()
    configure_logging(settings)
    gc.freeze()  # what start-up made lives as long as the process: no collection visits it
    web.run_app(create_app(settings), host=settings.host, port=port(settings),
                access_log=None, print=None, loop=uvloop.new_event_loop())
