"""Every message the services exchange: engine commands, journal events, settlements.

Tagged, frozen msgspec Structs, one union per family, decoders built once at import.
Prices are integer price units of the instrument (see `common.instruments`); quantities
are integers; timestamps are integer nanoseconds since the epoch (UTC). Fields added
later get defaults, so old and new readers agree.
"""

from __future__ import annotations

import enum

import msgspec


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"


class OrderType(enum.Enum):
    LIMIT = "limit"
    MARKET = "market"


class TimeInForce(enum.Enum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    DAY = "DAY"


class Stp(enum.Enum):
    """Self-trade prevention, applied by the incoming order when it meets its own user."""

    NONE = "none"
    CANCEL_NEWEST = "cancel_newest"
    CANCEL_OLDEST = "cancel_oldest"
    CANCEL_BOTH = "cancel_both"


class OrderStatus(enum.Enum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


class RejectReason(enum.Enum):
    """Why a command did nothing (or an order was refused)."""

    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    INVALID_PRICE = "INVALID_PRICE"
    INVALID_QUANTITY = "INVALID_QUANTITY"
    INVALID_ORDER = "INVALID_ORDER"
    DUPLICATE_ORDER_ID = "DUPLICATE_ORDER_ID"
    POST_ONLY_WOULD_CROSS = "POST_ONLY_WOULD_CROSS"
    FOK_NOT_FILLABLE = "FOK_NOT_FILLABLE"
    ORDER_NOT_LIVE = "ORDER_NOT_LIVE"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    UNKNOWN_ASSET = "UNKNOWN_ASSET"
    DUPLICATE_TRANSFER = "DUPLICATE_TRANSFER"
    BALANCE_LIMIT = "BALANCE_LIMIT"


class CancelReason(enum.Enum):
    """Why (part of) an order left the book without trading."""

    USER = "USER"
    IMMEDIATE_OR_CANCEL = "IMMEDIATE_OR_CANCEL"
    NO_LIQUIDITY = "NO_LIQUIDITY"
    SELF_TRADE = "SELF_TRADE"


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", gc=False):
    """Base of every tagged message: the tag goes in `kind` (orders have a `type`)."""


# ---- commands (imperative) ---------------------------------------------------------


class PlaceOrder(Message, frozen=True, tag="place"):
    order_id: str
    symbol: str
    side: Side
    quantity: int
    price: int | None = None  # price units; None for market orders
    type: OrderType = OrderType.LIMIT
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    stp: Stp = Stp.NONE
    user_id: str | None = None
    client_order_id: str | None = None
    timestamp: int = 0


class CancelOrder(Message, frozen=True, tag="cancel"):
    order_id: str
    timestamp: int = 0


class ModifyOrder(Message, frozen=True, tag="modify"):
    """New price (re-enters, loses priority) and/or new total quantity."""

    order_id: str
    price: int | None = None
    quantity: int | None = None
    timestamp: int = 0


class ExpireOrders(Message, frozen=True, tag="expire"):
    """Session close of one instrument: every live DAY order expires."""

    symbol: str
    timestamp: int = 0


class TransferFunds(Message, frozen=True, tag="transfer"):
    """A deposit (`withdrawal` False) or withdrawal of `amount` asset units (see
    `common.assets`) for one user; a `transfer_id` seen before changes nothing."""

    transfer_id: str
    user_id: str
    asset: str
    amount: int
    withdrawal: bool = False
    timestamp: int = 0


Command = PlaceOrder | CancelOrder | ModifyOrder | ExpireOrders | TransferFunds


# ---- events (past tense); `seq` is the instrument's sequence number of the command --


class OrderAccepted(Message, frozen=True, tag="accepted"):
    """A new order passed every check and entered matching, exactly as `order` placed it."""

    seq: int
    order: PlaceOrder


class OrderRejected(Message, frozen=True, tag="rejected"):
    """A new order refused as a whole; it is recorded with status REJECTED."""

    seq: int
    order: PlaceOrder
    reason: RejectReason


class TradeExecuted(Message, frozen=True, tag="trade"):
    """One match at the maker's price; `trade_no` counts the instrument's trades from 1."""

    seq: int
    timestamp: int
    symbol: str
    trade_no: int
    price: int
    quantity: int
    buy_order_id: str
    sell_order_id: str
    aggressor_side: Side
    buyer_user_id: str | None = None
    seller_user_id: str | None = None


class OrderModified(Message, frozen=True, tag="modified"):
    """New price and total quantity; `requeued` when the order lost its time priority."""

    seq: int
    timestamp: int
    order_id: str
    price: int
    quantity: int
    requeued: bool


def remaining_quantity(quantity: int, traded: int, cancelled: int) -> int:
    """What remains of an order of total `quantity` (an `OrderModified`'s, for one): the
    part neither traded nor cancelled. The engine and every journal reader use this."""
    return quantity - traded - cancelled


class OrderCancelled(Message, frozen=True, tag="cancelled"):
    """`quantity` is the remaining quantity that was cancelled."""

    seq: int
    timestamp: int
    order_id: str
    quantity: int
    reason: CancelReason


class OrderExpired(Message, frozen=True, tag="expired"):
    seq: int
    timestamp: int
    order_id: str
    quantity: int


class CommandRejected(Message, frozen=True, tag="command_rejected"):
    """A command that changed nothing; it takes no sequence number and is not journaled."""

    timestamp: int
    order_id: str
    reason: RejectReason
    message: str = ""


# ---- balance events (funding on): amounts in asset units (see `common.assets`) -------


class FundsTransferred(Message, frozen=True, tag="transferred"):
    """A deposit (credits `available`) or a withdrawal (debits it)."""

    seq: int
    timestamp: int
    transfer_id: str
    user_id: str
    asset: str
    amount: int
    withdrawal: bool = False


class FundsHeld(Message, frozen=True, tag="held"):
    """`amount` moved from a user's available to held, for one order."""

    seq: int
    order_id: str
    user_id: str | None
    asset: str
    amount: int


class FundsReleased(Message, frozen=True, tag="released"):
    """`amount` of an order's hold moved back to its user's available."""

    seq: int
    order_id: str
    user_id: str | None
    asset: str
    amount: int


class FundsExchanged(Message, frozen=True, tag="exchanged"):
    """The money of one trade (`trade_no`): the buyer's hold pays `amount` of quote plus
    `buyer_fee`, the seller's hold gives `base_amount` of base; the seller receives
    `amount - seller_fee` of quote, the buyer `base_amount` of base, the fees go to the
    venue's fee account of the quote asset."""

    seq: int
    trade_no: int
    base: str
    quote: str
    buy_order_id: str
    sell_order_id: str
    buyer_user_id: str | None
    seller_user_id: str | None
    base_amount: int
    amount: int
    buyer_fee: int = 0
    seller_fee: int = 0


Event = (OrderAccepted | OrderRejected | TradeExecuted | OrderModified | OrderCancelled
         | OrderExpired | CommandRejected | FundsTransferred | FundsHeld | FundsReleased
         | FundsExchanged)


class EventBatch(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The events of one command. `seq` 0 means it changed nothing (not journaled).
    `key_id` is the API key that issued the command: None with auth off, for the
    service's own commands (session close) and in journals written before keys."""

    symbol: str
    seq: int
    events: list[Event]
    key_id: str | None = None


class TradeSettled(msgspec.Struct, frozen=True, kw_only=True):
    """Published on `ex.settlements.<SYMBOL>` when a trade is settled."""

    trade_id: str
    symbol: str
    settlement_timestamp: int


class OrdersInterest(msgspec.Struct, frozen=True, kw_only=True):
    """One svc_stream instance's users with `orders` subscribers, on `md.interest.orders`:
    good for `ttl` seconds, unless the instance announces again (it does before then)."""

    instance: str
    user_ids: list[str]
    ttl: float


# A journal message holds the batches of consecutive commands of one instrument (group
# commit): a msgpack array of `EventBatch`es. Messages written before group commit hold
# one `EventBatch` (a msgpack map); the union reads both.
JournalMessage = list[EventBatch] | EventBatch

command_decoder = msgspec.msgpack.Decoder(Command)
batch_decoder = msgspec.msgpack.Decoder(EventBatch)
journal_decoder = msgspec.msgpack.Decoder(JournalMessage)
settlement_decoder = msgspec.msgpack.Decoder(TradeSettled)
interest_decoder = msgspec.msgpack.Decoder(OrdersInterest)
encoder = msgspec.msgpack.Encoder()
