"""`python -m svc_trades`: the trade service on EX_TRADES_PORT (default 8001)."""

from common.service import serve
from svc_trades.app import create_app

if __name__ == "__main__":
    serve(create_app, lambda settings: settings.trades_port)
