"""What the account routes answer: balances, transfers and ledger postings, amounts as
decimal strings with every place of the asset scale (`common.assets`)."""

from __future__ import annotations

import msgspec

from common.listing import Pagination


class BalanceView(msgspec.Struct, kw_only=True, gc=False):
    asset: str
    available: str
    held: str


class BalancesView(msgspec.Struct, kw_only=True):
    """`GET /accounts/me/balances/`: every asset the user ever held, by name."""

    user_id: str
    balances: list[BalanceView]


class TransferView(msgspec.Struct, kw_only=True):
    """A deposit or withdrawal, with the user's balance of the asset right after it (for a
    repeated transfer id: as it stands now)."""

    transfer_id: str
    user_id: str
    asset: str
    amount: str
    balance: BalanceView


class PostingView(msgspec.Struct, kw_only=True, gc=False):
    """One movement of the ledger: `amount` leaves the debited account for the credited
    one. Accounts are `available` and `held` of the user, or the venue's `external` (money
    outside the exchange) and `fees` of the asset."""

    posting_id: int
    asset: str
    amount: str
    debit: str  # "user:<uuid>:available" | "user:<uuid>:held" | "external" | "fees"
    credit: str
    kind: str  # deposit, withdrawal, hold, release, trade, fee
    reference: str  # the transfer id, order id or trade id it belongs to
    timestamp: str
    symbol: str  # its place in the journal: the batch of the instrument's `seq`, `leg`-th
    seq: int
    leg: int


class LedgerList(msgspec.Struct, kw_only=True):
    """`GET /accounts/me/ledger/`: the user's postings, newest first."""

    user_id: str
    postings: list[PostingView]
    pagination: Pagination
