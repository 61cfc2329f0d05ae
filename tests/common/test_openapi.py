"""The generated OpenAPI documents describe the real answers, and nothing else."""

import jsonschema
import pytest

from common.openapi import document
from svc_orders.openapi import OPERATIONS
from tests.openapi_check import check_answer

ORDER = {
    "order_id": "bd2597f1-d1c5-4f75-ad87-a677d9948c65", "client_order_id": None,
    "symbol": "DEFAULT", "side": "sell", "type": "limit", "time_in_force": "GTC",
    "post_only": False, "stp": "none", "quantity": 50, "price": "150.20",
    "remaining_quantity": 0, "traded_quantity": 50, "cancelled_quantity": 0,
    "average_traded_price": "150.25", "status": "FILLED", "is_active": False,
    "cancel_reason": None, "reject_reason": None, "user_id": None,
    "created_at": "2026-11-24T14:11:55.252244Z", "updated_at": "2026-11-24T14:11:55.252244Z",
    "seq": 2,
}


def test_orders_document_accepts_real_answers_and_refuses_others() -> None:
    spec = document("svc_orders", OPERATIONS)
    assert spec["openapi"] == "3.1.0"
    check_answer(spec, "GET", "/orders/{order_id}/", 200, ORDER)
    check_answer(spec, "POST", "/orders/", 201, {**ORDER, "fills": []})
    check_answer(spec, "DELETE", "/orders/{order_id}/", 404,
                 {"error": {"code": "ORDER_NOT_FOUND", "message": "no order", "details": {}}})
    with pytest.raises(jsonschema.ValidationError):
        check_answer(spec, "GET", "/orders/{order_id}/", 200, {**ORDER, "quantity": "50"})
    with pytest.raises(jsonschema.ValidationError):
        check_answer(spec, "GET", "/orders/{order_id}/", 404, {"detail": "Not found."})
