"""`python -m svc_orders`: the order service on EX_ORDERS_PORT (default 8000)."""

from common.service import serve
from svc_orders.app import create_app

if __name__ == "__main__":
    serve(create_app, lambda settings: settings.orders_port)
