"""The account routes: balances and ledger postings, read from the projection.

`/accounts/me/...` is the caller's own (a key is needed: with auth off there is no
caller, and there is no such account: 404); `/accounts/{user_id}/...` any user's, for an admin (with
auth off, for anyone, like every route then). Balances are the ledger's: they follow the
engine by the projection's lag. Deposits and withdrawals (admin) change the balances the
engine keeps: they are relayed to svc_orders (`common.transfers`) and its answer is
relayed back as it is.
"""

from __future__ import annotations

import nats.errors
from aiohttp import web

from common import subjects
from common.access import identity, requires
from common.http import ApiError, json_body_response, json_response, uuid_path
from common.listing import page_request
from common.messages import encoder
from common.transfers import answer_decoder, read_transfer
from svc_trades import ledger
from svc_trades.api import NATS, POOL

TRANSFER_TIMEOUT = web.AppKey("transfer_timeout", float)  # seconds svc_orders may take


def _me(request: web.Request) -> str:
    caller = identity(request)
    if caller is None:
        raise ApiError(404, "ACCOUNT_NOT_FOUND", "with auth off there is no caller: ask "
                       "/accounts/{user_id}/... instead")
    return caller.user_id


async def my_balances(request: web.Request) -> web.Response:
    return json_response(await ledger.balances(request.app[POOL], _me(request)))


async def my_ledger(request: web.Request) -> web.Response:
    page = page_request(request, "ledger")
    return json_response(await ledger.postings(request.app[POOL], _me(request), page))


@requires("admin")
async def user_balances(request: web.Request) -> web.Response:
    user_id = uuid_path(request, "user_id")
    return json_response(await ledger.balances(request.app[POOL], user_id))


@requires("admin")
async def user_ledger(request: web.Request) -> web.Response:
    user_id = uuid_path(request, "user_id")
    page = page_request(request, "ledger")
    return json_response(await ledger.postings(request.app[POOL], user_id, page))


@requires("admin")
async def deposit(request: web.Request) -> web.Response:
    return await _transfer(request, withdrawal=False)


@requires("admin")
async def withdraw(request: web.Request) -> web.Response:
    return await _transfer(request, withdrawal=True)


async def _transfer(request: web.Request, withdrawal: bool) -> web.Response:
    asked = await read_transfer(request, withdrawal)
    try:
        reply = await request.app[NATS].request(
            subjects.TRANSFER_REQUEST, encoder.encode(asked),
            timeout=request.app[TRANSFER_TIMEOUT])
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        raise ApiError(503, "UNAVAILABLE", "the order service did not answer; retry with "
                       "the same transfer_id") from None
    answer = answer_decoder.decode(reply.data)
    return json_body_response(answer.body, answer.status)


ROUTES = [  # "me" first: it would match {user_id} too
    ("GET", "/accounts/me/balances/", my_balances),
    ("GET", "/accounts/me/ledger/", my_ledger),
    ("GET", "/accounts/{user_id}/balances/", user_balances),
    ("GET", "/accounts/{user_id}/ledger/", user_ledger),
    ("POST", "/accounts/{user_id}/deposits/", deposit),
    ("POST", "/accounts/{user_id}/withdrawals/", withdraw),
]
