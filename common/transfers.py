"""Deposits and withdrawals on the wire: the request body, its validation, and the
request-reply by which svc_trades (which serves the account routes) has svc_orders
(which keeps the balances) make one.

svc_trades checks the body's shape, then sends a `TransferRequest` (msgpack) on
`subjects.TRANSFER_REQUEST`; svc_orders validates it against its instruments, submits the
transfer and answers a `TransferAnswer`: the HTTP status and JSON body to relay as they
are (the transfer, or an error in the contract's shape). No answer within
`EX_QUERY_TIMEOUT` is a 503 for the client.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Annotated, Any

import msgspec
from aiohttp import web

from common.access import identity
from common.accountviews import TransferView
from common.assets import ASSET_DECIMALS, MAX_TRANSFER, parse_amount
from common.http import ApiError, has_control_characters, read_json, uuid_path
from common.instruments import DEFAULT_SYMBOL
from common.messages import TransferFunds
from common.openapi import PLAIN_TEXT, Operation

MAX_TRANSFER_ID = 64
_WHOLE_DIGITS = len(str(MAX_TRANSFER // 10**ASSET_DECIMALS)) - 1
_AMOUNT = {"oneOf": [
    {"type": "number", "exclusiveMinimum": 0,
     "exclusiveMaximum": MAX_TRANSFER // 10**ASSET_DECIMALS},
    {"type": "string", "pattern": f"^(?=[0-9.]*[1-9])0*[0-9]{{1,{_WHOLE_DIGITS}}}"
                                  f"(?:\\.[0-9]{{1,{ASSET_DECIMALS}}}0*)?$"}],
    "description": f"positive, below a trillion, at most {ASSET_DECIMALS} decimals"}


class TransferBody(msgspec.Struct, kw_only=True):
    """A deposit or withdrawal: `transfer_id` makes it idempotent."""

    asset: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$", extra_json_schema={
        "examples": ["USD", DEFAULT_SYMBOL], "description": "an asset some instrument "
        "trades: the default instrument's, or those of EX_INSTRUMENTS_FILE"})]
    amount: Annotated[int | float | str, msgspec.Meta(extra_json_schema=_AMOUNT)]
    transfer_id: Annotated[str, msgspec.Meta(min_length=1, extra_json_schema={
        "maxLength": MAX_TRANSFER_ID, "pattern": f"^{PLAIN_TEXT}*$"})]


def _invalid(code: str, message: str, field: str, value: Any = None) -> ApiError:
    details: dict[str, Any] = {"field": field}
    if value is not None:
        details["value"] = value
    return ApiError(400, code, message, details)


def transfer_command(user_id: str, body: TransferBody, assets: Collection[str],
                     withdrawal: bool) -> TransferFunds:
    """Validate a deposit or withdrawal body for `user_id` into a `TransferFunds`."""
    if body.asset not in assets:
        raise _invalid("UNKNOWN_ASSET", f"no instrument trades {body.asset!r}", "asset",
                       body.asset)
    amount = parse_amount(body.amount)
    if amount is None:
        raise _invalid("INVALID_AMOUNT", "amount must be positive, below a trillion, with "
                       f"at most {ASSET_DECIMALS} decimals", "amount", body.amount)
    if (len(body.transfer_id) > MAX_TRANSFER_ID
            or has_control_characters(body.transfer_id)):
        raise _invalid("INVALID_TRANSFER_ID", f"transfer_id must be 1 to {MAX_TRANSFER_ID} "
                       "characters without control characters", "transfer_id")
    return TransferFunds(transfer_id=body.transfer_id, user_id=user_id, asset=body.asset,
                         amount=amount, withdrawal=withdrawal, timestamp=time.time_ns())


class TransferRequest(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str  # a canonical UUID
    body: TransferBody
    withdrawal: bool
    key_id: str | None = None  # the admin key that asked, journaled with the transfer


async def read_transfer(request: web.Request, withdrawal: bool) -> TransferRequest:
    """The deposit or withdrawal a `POST /accounts/{user_id}/deposits/` (or
    `/withdrawals/`) asks for, with the key that asked; svc_orders serves the routes
    itself, svc_trades relays the request to it."""
    caller = identity(request)
    return TransferRequest(user_id=uuid_path(request, "user_id"),
                           body=await read_json(request, TransferBody), withdrawal=withdrawal,
                           key_id=None if caller is None else caller.key_id)


class TransferAnswer(msgspec.Struct, frozen=True, kw_only=True):
    status: int
    body: bytes  # JSON: the transfer, or an error


request_decoder = msgspec.msgpack.Decoder(TransferRequest)
answer_decoder = msgspec.msgpack.Decoder(TransferAnswer)


# Both svc_orders (which journals them) and svc_trades (which relays them) serve these.
TRANSFER_OPERATIONS = [
    Operation("POST", path, summary, {201: TransferView, 200: TransferView},
              body=TransferBody, failures=(400, 409, 413, 503), role="admin")
    for path, summary in [
        ("/accounts/{user_id}/deposits/",
         "Deposit into a user's available balance (admin; funding on)"),
        ("/accounts/{user_id}/withdrawals/",
         "Withdraw from a user's available balance (admin; funding on)")]]
