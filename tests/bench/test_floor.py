"""The order API benchmark's floor: svc_orders' own order route and edge, answering as
svc_orders does, with no exchange behind it."""

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ops.bench.harness import service_process
from ops.stack import HOST, free_port


def post(port: int, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://{HOST}:{port}/orders/", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_floor_answers_with_svc_orders_handler_and_places_every_order_resting(
        tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "EX_LOG_FORMAT": "json"}
    with service_process("floor", [sys.executable, "-m", "ops.bench.api.floor", str(port)],
                         env, port, tmp_path / "floor.log"):
        status, order = post(port, b'{"side":"buy","quantity":7,"price":"100.03"}')
        assert status == 201
        assert (order["side"], order["quantity"], order["price"], order["status"],
                order["remaining_quantity"], order["fills"]) == (
            "buy", 7, "100.03", "ACTIVE", 7, [])
        _, second = post(port, b'{"side":"sell","quantity":7,"price":"100.03"}')
        assert second["status"] == "ACTIVE"  # nothing matches: no exchange behind it
        assert (second["seq"], second["order_id"] != order["order_id"]) == (2, True)
        status, refused = post(port, b'{"side":"buy","quantity":7,"price":"100.001"}')
        assert (status, refused["error"]["code"]) == (400, "INVALID_PRICE")  # svc_orders' checks
