"""`python -m svc_stream`: the WebSocket feeds on EX_STREAM_PORT (default 8002).

It runs on the C library's allocator (`common.service.on_c_allocator`): with Python's
own, the memory of thousands of departed clients stays in half-empty arenas; with
glibc's, `svc_stream.memory` hands most of it back (`ops.bench.ws_abandoned`: 123 MB
with 2,000 clients, 76 MB after they left, 64 MB before they came; 105 MB after with
Python's allocator).
"""

from common.service import on_c_allocator, serve
from svc_stream.app import create_app

if __name__ == "__main__":
    on_c_allocator("svc_stream")
    serve(create_app, lambda settings: settings.stream_port)
