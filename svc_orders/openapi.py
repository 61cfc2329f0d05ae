"""svc_orders' operations for its OpenAPI document (`/openapi.json`)."""

from __future__ import annotations

from common.listing import OrderList
from common.openapi import COMMON_OPERATIONS, ORDER_LIST_QUERY, Operation
from common.transfers import TRANSFER_OPERATIONS
from common.views import OrderView
from svc_orders.requests import ModifyRequest, PlaceRequest

ORDER = "/orders/{order_id}/"
MODIFY_FAILURES = (400, 404, 409, 413, 503)

OPERATIONS = [
    Operation("POST", "/orders/", "Place an order; answers it after matching, with fills "
              "(with auth on, a fill names the other side's order and user only to an admin)",
              {201: OrderView, 200: OrderView}, body=PlaceRequest,
              failures=(400, 413, 503)),
    Operation("GET", ORDER, "One order, live or historical", {200: OrderView},
              failures=(400, 404, 503)),
    Operation("PUT", ORDER, "Modify price and/or total quantity", {200: OrderView},
              body=ModifyRequest, failures=MODIFY_FAILURES),
    Operation("PATCH", ORDER, "Modify price and/or total quantity", {200: OrderView},
              body=ModifyRequest, failures=MODIFY_FAILURES),
    Operation("DELETE", ORDER, "Cancel a live order", {200: OrderView},
              failures=(400, 404, 409, 503)),
    Operation("GET", "/orders/", "Orders, newest first, from the projection",
              {200: OrderList}, query=ORDER_LIST_QUERY, failures=(400, 503)),
    *TRANSFER_OPERATIONS,
    *COMMON_OPERATIONS,
]
