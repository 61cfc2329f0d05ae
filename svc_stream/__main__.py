"""`python -m svc_stream`: the WebSocket feeds on EX_STREAM_PORT (default 8002)."""

from common.service import serve
from svc_stream.app import create_app

if __name__ == "__main__":
    serve(create_app, lambda settings: settings.stream_port)
