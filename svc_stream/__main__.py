"""`python -m svc_stream`: the WebSocket feeds on EX_STREAM_PORT (default 8002).

It runs on the C library's allocator (PYTHONMALLOC=malloc, set here by running itself
again if needed): with Python's own, the memory of thousands of departed clients stays
in half-empty arenas; with glibc's, `svc_stream.memory` hands most of it back
(`ops.bench.ws_abandoned`: 123 MB with 2,000 clients, 76 MB after they left, 64 MB
before they came; 105 MB after with Python's allocator).
"""

import os
import sys

from common.service import serve
from svc_stream.app import create_app

if __name__ == "__main__":
    if os.environ.get("PYTHONMALLOC") != "malloc":
        os.execve(sys.executable, [sys.executable, "-m", "svc_stream", *sys.argv[1:]],
                  {**os.environ, "PYTHONMALLOC": "malloc"})
    serve(create_app, lambda settings: settings.stream_port)
