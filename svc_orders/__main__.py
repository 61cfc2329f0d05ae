"""`python -m svc_orders`: the order service on EX_ORDERS_PORT (default 8000).

It runs on the C library's allocator with its heap on transparent huge pages
(`common.service.on_c_allocator`): a snapshot's fork then copies 512 times fewer page
table entries, and matching pauses ~1 ms instead of ~10 ms at 100,000 resting orders
(`python -m ops.bench.restart`, which runs the same way).
"""

from common.service import on_c_allocator, serve
from svc_orders.app import create_app

if __name__ == "__main__":
    on_c_allocator("svc_orders", huge_pages=True)
    serve(create_app, lambda settings: settings.orders_port)
