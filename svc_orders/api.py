"""The order REST API (SPEC 3, svc_orders): thin handlers over the sequencer.

Each handler validates its input (400 in the contract's shape), runs one command through
the sequencer (503 if the journal cannot confirm it), and answers the order as it stood
right after that command, with the trades it made.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from time import time_ns

from aiohttp import web

from common.http import ApiError, json_response, read_json, uuid_path
from common.instruments import Instrument
from common.messages import (
    CancelOrder,
    Command,
    CommandRejected,
    EventBatch,
    RejectReason,
    TradeExecuted,
)
from common.orderstate import OrderState
from common.views import OrderView, order_view, trade_view
from svc_orders import metrics
from svc_orders.requests import ModifyBody, PlaceBody, modify_command, place_command
from svc_orders.sequencer import Sequencer, Unavailable

FindOrder = Callable[[str], Awaitable[OrderState | None]]

SEQUENCER = web.AppKey("sequencer", Sequencer)
INSTRUMENTS: web.AppKey[Mapping[str, Instrument]] = web.AppKey("instruments")
FIND_ORDER: web.AppKey[FindOrder] = web.AppKey("find_order")


def _view(request: web.Request, state: OrderState) -> OrderView:
    return order_view(state, request.app[INSTRUMENTS][state.symbol])


def _unavailable(kind: str, error: Unavailable) -> ApiError:
    metrics.COMMANDS.labels(kind, "unavailable").inc()
    return ApiError(503, "UNAVAILABLE", str(error),
                    {"hint": "retry with the same client_order_id, or look the order up "
                             "with GET /orders/?client_order_id=..."})


async def _run(request: web.Request, kind: str, command: Command,
               order_id: str) -> tuple[EventBatch, OrderState | None]:
    try:
        batch, state = await request.app[SEQUENCER].execute(command, watch=order_id)
    except Unavailable as error:
        raise _unavailable(kind, error) from None
    outcome = "rejected" if not batch.seq else "ok"
    metrics.COMMANDS.labels(kind, outcome).inc()
    return batch, state


async def _refused(request: web.Request, order_id: str, event: CommandRejected) -> ApiError:
    """The HTTP error for a cancel or modify that changed nothing."""
    if event.reason is RejectReason.ORDER_NOT_LIVE:
        known = await request.app[FIND_ORDER](order_id)
        if known is None:
            return ApiError(404, "ORDER_NOT_FOUND", f"no order {order_id}")
        return ApiError(409, "ORDER_NOT_ACTIVE", f"order {order_id} is {known.status.value}",
                        {"status": known.status.value})
    return ApiError(409, event.reason.value, event.message or event.reason.value)


def _answer(request: web.Request, batch: EventBatch, state: OrderState,
            status: int) -> web.Response:
    instrument = request.app[INSTRUMENTS][state.symbol]
    view = order_view(state, instrument)
    view.fills = [trade_view(event, instrument) for event in batch.events
                  if type(event) is TradeExecuted]
    return json_response(view, status)


async def place_order(request: web.Request) -> web.Response:
    body = await read_json(request, PlaceBody)
    command = place_command(body, request.app[INSTRUMENTS],
                            request.headers.get("Idempotency-Key"))
    if command.client_order_id is not None:
        try:
            request.app[SEQUENCER].require_ready()
        except Unavailable as error:
            raise _unavailable("place", error) from None
        earlier = request.app[SEQUENCER].store.by_key(command.user_id, command.client_order_id)
        if earlier is not None:
            state = await request.app[FIND_ORDER](earlier)
            if state is not None:
                metrics.COMMANDS.labels("place", "repeat").inc()
                return json_response(_view(request, state), 200)
    batch, state = await _run(request, "place", command, command.order_id)
    assert state is not None, "a placed order is always recorded"
    return _answer(request, batch, state, 201)


async def get_order(request: web.Request) -> web.Response:
    order_id = uuid_path(request, "order_id")
    state = await request.app[FIND_ORDER](order_id)
    if state is None:
        raise ApiError(404, "ORDER_NOT_FOUND", f"no order {order_id}")
    return json_response(_view(request, state))


async def modify_order(request: web.Request) -> web.Response:
    order_id = uuid_path(request, "order_id")
    body = await read_json(request, ModifyBody)
    known = await request.app[FIND_ORDER](order_id)
    if known is None:
        raise ApiError(404, "ORDER_NOT_FOUND", f"no order {order_id}")
    command = modify_command(order_id, body, request.app[INSTRUMENTS][known.symbol])
    batch, state = await _run(request, "modify", command, order_id)
    if state is None:
        assert isinstance(batch.events[0], CommandRejected)
        raise await _refused(request, order_id, batch.events[0])
    return _answer(request, batch, state, 200)


async def cancel_order(request: web.Request) -> web.Response:
    order_id = uuid_path(request, "order_id")
    command = CancelOrder(order_id=order_id, timestamp=time_ns())
    batch, state = await _run(request, "cancel", command, order_id)
    if state is None:
        assert isinstance(batch.events[0], CommandRejected)
        raise await _refused(request, order_id, batch.events[0])
    return json_response(_view(request, state))
