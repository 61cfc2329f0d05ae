"""`python -m svc_stream`: the WebSocket feeds on EX_STREAM_PORT (default 8002)."""

from __future__ import annotations

from aiohttp import web

from common.config import load_settings
from common.logs import configure_logging
from svc_stream.app import create_app


def main() -> None:
    settings = load_settings()
    configure_logging(settings)
    try:
        import uvloop
    except ImportError:  # not on every platform; asyncio's own loop works, only slower
        pass
    else:
        uvloop.install()
    web.run_app(create_app(settings), host=settings.host, port=settings.stream_port,
                access_log=None, print=None)


if __name__ == "__main__":
    main()
