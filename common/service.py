"""How every service process starts: settings from EX_, logging, uvloop, the app."""

from __future__ import annotations

import gc
from collections.abc import Callable

import uvloop
from aiohttp import web

from common.config import Settings, check_protected_mode, load_settings
from common.logs import configure_logging

# Requests and journal messages allocate objects the cyclic collector tracks (messages,
# futures, dicts) that nearly all die young. At CPython's default threshold (700) the
# projection collected its young generation ~130 times a second, 4% of its CPU; at this
# one, 5 times in a whole 200k-trade drain (measured with gc.callbacks).
YOUNG_GC_THRESHOLD = 10_000


def settle_heap() -> None:
    """Call once start-up is done: what exists now lives as long as the process, so no
    collection visits it again, and young garbage is collected in larger, rarer passes."""
    gc.freeze()
    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])


def serve(create_app: Callable[[Settings], web.Application],
          port: Callable[[Settings], int]) -> None:
    """Run the app made by `create_app` on `port(settings)` until SIGINT/SIGTERM; refuse to
    start, naming the variable, on a bad setting or one that would leave it unprotected
    (a non-loopback address with auth off, auth on without a secret key)."""
    try:
        settings = load_settings()
        check_protected_mode(settings)
    except ValueError as error:  # a bad EX_ variable: say which, without a traceback
        raise SystemExit(str(error)) from None
    configure_logging(settings)
    settle_heap()
    web.run_app(create_app(settings), host=settings.host, port=port(settings),
                access_log=None, print=None, loop=uvloop.new_event_loop())
