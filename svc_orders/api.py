"""The order REST API: handlers that translate between HTTP and the sequencer.

Each handler turns a request into one command (400 in the contract's shape if the input
is invalid), submits it, and turns the outcome into an answer: the order as it stood
right after the command, with the trades it made; 200 with the original order for a
repeated placement; 404 or 409 for a cancel or modify that changed nothing; 503 if the
journal could not confirm the command.

With auth on, the user is the key's, another user's order answers 404 as if it did not
exist (to anyone but an admin), a fill names the counterparty's order and user only to an
admin, every command journals the key that issued it, and an admin sees that key on
`GET /orders/{order_id}/` (`issued_by_key`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from time import time_ns

import msgspec
from aiohttp import web
from msgspec.json import encode as json_encode
from nats.aio.msg import Msg

from common.access import identity, is_admin, requires, trades_seen_by
from common.accountviews import BalanceView, TransferView
from common.assets import format_amount, homes
from common.http import (
    ApiError,
    error_body,
    json_response,
    read_json,
    uuid_path,
)
from common.instruments import Instrument
from common.messages import CancelOrder, Command, CommandRejected, RejectReason, encoder
from common.orderstate import OrderState
from common.transfers import (
    TransferAnswer,
    TransferRequest,
    read_transfer,
    request_decoder,
    transfer_command,
)
from common.views import TradeView, order_view
from svc_orders import metrics
from svc_orders.requests import ModifyBody, PlaceBody, modify_command, place_command
from svc_orders.sequencer import FindOrder as FindOrder  # the type of FIND_ORDER
from svc_orders.sequencer import NotLeader, Outcome, Sequencer, Unavailable

SEQUENCER = web.AppKey("sequencer", Sequencer)
INSTRUMENTS: web.AppKey[Mapping[str, Instrument]] = web.AppKey("instruments")
FIND_ORDER: web.AppKey[FindOrder] = web.AppKey("find_order")


def _not_found(order_id: str) -> ApiError:
    return ApiError(404, "ORDER_NOT_FOUND", f"no order {order_id}")


def _refused(refusal: CommandRejected, order: OrderState | None) -> ApiError:
    """The HTTP error for a command that changed nothing."""
    if refusal.reason is RejectReason.ORDER_NOT_LIVE:
        if order is None:
            return _not_found(refusal.order_id)
        return ApiError(409, "ORDER_NOT_ACTIVE",
                        f"order {refusal.order_id} is {order.status.value}",
                        {"status": order.status.value})
    return ApiError(409, refusal.reason.value, refusal.message or refusal.reason.value)


def _unavailable(error: Unavailable) -> ApiError:
    if isinstance(error, NotLeader):
        return ApiError(503, "NOT_LEADER", str(error), {"leader": error.leader})
    return ApiError(503, "UNAVAILABLE", str(error),
                    {"hint": "retry with the same client_order_id, or look the order "
                             "up with GET /orders/?client_order_id=..."})


async def _find(request: web.Request, order_id: str) -> OrderState:
    """The order as the journal holds it, or a 404 (a 503 while the journal fails)."""
    try:
        order = await request.app[FIND_ORDER](order_id)
    except Unavailable as error:
        raise _unavailable(error) from None
    if order is None:
        raise _not_found(order_id)
    return order


async def _find_own(request: web.Request, order_id: str) -> OrderState:
    """`_find`, and a 404 too for another user's order unless the caller is an admin."""
    order = await _find(request, order_id)
    caller = identity(request)
    if caller is not None and not is_admin(caller) and order.user_id != caller.user_id:
        raise _not_found(order_id)
    return order


def _submit(request: web.Request, kind: str, command: Command,
            named: OrderState | None = None) -> Awaitable[Outcome]:
    """Submit `command`, with the key that issued it; a refusal or an unconfirmed command
    becomes its HTTP error. A plain function handing over `_run`'s coroutine: one
    coroutine less to suspend and resume on every command's path."""
    caller = identity(request)
    return _run(request.app[SEQUENCER], kind, command, named,
                None if caller is None else caller.key_id)


async def _run(sequencer: Sequencer, kind: str, command: Command,
               named: OrderState | None, key_id: str | None) -> Outcome:
    """`sequencer.submit`, counted by `kind` and outcome; a refusal or an unconfirmed
    command becomes its HTTP error."""
    try:
        outcome = await sequencer.submit(command, named, key_id)
    except Unavailable as error:
        metrics.commands(kind, "unavailable").inc()
        raise _unavailable(error) from None
    if outcome.refusal is not None:
        metrics.commands(kind, "rejected").inc()
        raise _refused(outcome.refusal, outcome.order)
    metrics.commands(kind, "repeat" if outcome.repeat else "ok").inc()
    return outcome


def _answer(request: web.Request, order: OrderState | None, status: int = 200,
            fills: list[TradeView] | None = None) -> web.Response:
    """`order` as JSON, with `fills` if given (the answer to a place or modify), each
    naming only the sides the caller may see."""
    assert order is not None, "an answered command names its order"
    view = order_view(order, request.app[INSTRUMENTS][order.symbol])
    if fills is not None:
        view.fills = trades_seen_by(identity(request), fills)
    return json_response(view, status)


async def place_order(request: web.Request) -> web.Response:
    body = await read_json(request, PlaceBody)
    command = place_command(body, request.app[INSTRUMENTS],
                            request.headers.get("Idempotency-Key"), identity(request))
    outcome = await _submit(request, "place", command)
    if outcome.repeat:
        return _answer(request, outcome.order)
    return _answer(request, outcome.order, 201, outcome.trades)


async def get_order(request: web.Request) -> web.Response:
    order_id = uuid_path(request, "order_id")
    order = await _find_own(request, order_id)
    caller = identity(request)
    if caller is None or caller.role != "admin":
        return _answer(request, order)
    view = order_view(order, request.app[INSTRUMENTS][order.symbol])
    view.issued_by_key = order.issued_by_key
    return json_response(view)


async def modify_order(request: web.Request) -> web.Response:
    order_id = uuid_path(request, "order_id")
    body = await read_json(request, ModifyBody)
    order = await _find_own(request, order_id)  # the body is read on its grid
    command = modify_command(order_id, body, request.app[INSTRUMENTS][order.symbol])
    outcome = await _submit(request, "modify", command, order)
    return _answer(request, outcome.order, 200, outcome.trades)


async def cancel_order(request: web.Request) -> web.Response:
    order_id = uuid_path(request, "order_id")
    # With auth on, the order is looked up first: only its owner (or an admin) cancels it.
    named = None if identity(request) is None else await _find_own(request, order_id)
    outcome = await _submit(request, "cancel", CancelOrder(order_id=order_id,
                                                          timestamp=time_ns()), named)
    return _answer(request, outcome.order)


# ---- deposits and withdrawals (admin; funding on) ------------------------------------


@requires("admin")
async def deposit(request: web.Request) -> web.Response:
    return await _transfer(request, withdrawal=False)


@requires("admin")
async def withdraw(request: web.Request) -> web.Response:
    return await _transfer(request, withdrawal=True)


async def _transfer(request: web.Request, withdrawal: bool) -> web.Response:
    status, view = await transfer(request.app[SEQUENCER], request.app[INSTRUMENTS],
                                  await read_transfer(request, withdrawal))
    return json_response(view, status)


async def transfer(sequencer: Sequencer, instruments: Mapping[str, Instrument],
                   asked: TransferRequest) -> tuple[int, TransferView]:
    """201 with the transfer and the balance after it; a transfer id seen before answers
    the original transfer with 200 and changes nothing. Failures raise `ApiError`."""
    if not sequencer.funding:
        raise ApiError(409, "FUNDING_OFF", "balances are kept only with EX_FUNDING=on")
    command = transfer_command(asked.user_id, asked.body, homes(instruments),
                               asked.withdrawal)
    outcome = await _run(sequencer, "withdrawal" if asked.withdrawal else "deposit",
                         command, None, asked.key_id)
    done = outcome.transfer
    assert done is not None, "a transfer's outcome holds it"
    available, held = outcome.balance
    return 200 if outcome.repeat else 201, TransferView(
        transfer_id=done.transfer_id, user_id=done.user_id, asset=done.asset,
        amount=format_amount(done.amount),
        balance=BalanceView(asset=done.asset, available=format_amount(available),
                            held=format_amount(held)))


def transfer_responder(sequencer: Sequencer, instruments: Mapping[str, Instrument],
                       ) -> Callable[[Msg], Awaitable[None]]:
    """Answers the transfers svc_trades relays (`common.transfers`)."""
    async def answer(msg: Msg) -> None:
        try:
            status, view = await transfer(sequencer, instruments,
                                          request_decoder.decode(msg.data))
            body = json_encode(view)
        except msgspec.DecodeError as error:  # a sender out of step with this schema
            status, body = 400, error_body(ApiError(400, "INVALID_REQUEST", str(error)))
        except ApiError as error:
            status, body = error.status, error_body(error)
        await msg.respond(encoder.encode(TransferAnswer(status=status, body=body)))
    return answer

