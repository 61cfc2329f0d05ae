"""svc_orders' operations for its OpenAPI document (`/openapi.json`)."""

from __future__ import annotations

from common.listing import OrderList
from common.openapi import ORDER_LIST_QUERY, Operation
from common.views import OrderView
from svc_orders.requests import ModifyRequest, PlaceRequest

ORDER = "/orders/{order_id}/"

OPERATIONS = [
    Operation("POST", "/orders/", "Place an order; answers it after matching, with fills",
              {201: OrderView, 200: OrderView}, body=PlaceRequest),
    Operation("GET", ORDER, "One order, live or historical", {200: OrderView}),
    Operation("PUT", ORDER, "Modify price and/or total quantity", {200: OrderView},
              body=ModifyRequest),
    Operation("PATCH", ORDER, "Modify price and/or total quantity", {200: OrderView},
              body=ModifyRequest),
    Operation("DELETE", ORDER, "Cancel a live order", {200: OrderView}),
    Operation("GET", "/orders/", "Orders, newest first, from the projection",
              {200: OrderList}, query=ORDER_LIST_QUERY),
]
