"""`Sequencer.submit`, the one entry point for commands: outcomes, refusals, repeats."""

import msgspec

from common.assets import BASE_UNIT
from common.config import Settings
from common.messages import EventBatch, ExpireOrders, PlaceOrder, Side, TransferFunds
from common.orderstate import OrderState
from common.views import TradeView
from svc_orders import api
from svc_orders.app import create_app
from tests.helpers import AppClient
from tests.orders.conftest import MakeClient

USER = "123e4567-e89b-12d3-a456-426614174000"


def place(order_id: str, side: Side, client_order_id: str | None = None) -> PlaceOrder:
    return PlaceOrder(order_id=order_id, symbol="DEFAULT", side=side, quantity=5, price=100,
                      user_id=USER, client_order_id=client_order_id)


async def test_trade_views_are_built_once_for_the_answer_and_the_market_data(
        orders: AppClient) -> None:
    sequencer = orders.app[api.SEQUENCER]
    handed: list[list[TradeView]] = []
    market = sequencer.on_journaled

    def journaled(batch: EventBatch, trades: list[TradeView]) -> None:
        handed.append(trades)
        market(batch, trades)

    sequencer.on_journaled = journaled
    await sequencer.submit(place("00000000-0000-4000-8000-000000000001", Side.SELL))
    outcome = await sequencer.submit(place("00000000-0000-4000-8000-000000000002", Side.BUY))
    assert [trade.quantity for trade in outcome.trades] == [5]
    assert handed[-1] is outcome.trades
    assert outcome.order is not None
    assert outcome.order.traded == 5


async def test_the_order_is_as_it_stood_right_after_its_command(orders: AppClient) -> None:
    sequencer = orders.app[api.SEQUENCER]
    resting = await sequencer.submit(place("00000000-0000-4000-8000-000000000003", Side.SELL))
    await sequencer.submit(place("00000000-0000-4000-8000-000000000004", Side.BUY))
    assert resting.order is not None
    assert (resting.order.status.value, resting.order.remaining) == ("ACTIVE", 5)


async def test_a_repeat_answers_the_original_and_places_nothing(orders: AppClient) -> None:
    sequencer = orders.app[api.SEQUENCER]
    first = await sequencer.submit(place("00000000-0000-4000-8000-000000000005", Side.BUY,
                                         client_order_id="once"))
    again = await sequencer.submit(place("00000000-0000-4000-8000-000000000006", Side.BUY,
                                         client_order_id="once"))
    assert (first.repeat, again.repeat, again.batch) == (False, True, None)
    assert first.order is not None
    assert again.order is not None
    assert again.order.order_id == first.order.order_id
    assert sequencer.store.get("00000000-0000-4000-8000-000000000006") is None


async def test_an_expiry_with_nothing_to_expire_is_no_refusal(orders: AppClient) -> None:
    outcome = await orders.app[api.SEQUENCER].submit(ExpireOrders(symbol="DEFAULT"))
    assert (outcome.refusal, outcome.order, outcome.trades) == (None, None, [])


async def test_refusals_look_the_order_up_once(orders: AppClient) -> None:
    """A modify looks its order up before the command (its instrument reads the body) and
    is answered from that; a cancel, which needs no lookup before, looks up after."""
    sequencer = orders.app[api.SEQUENCER]
    looked_up: list[str] = []
    find = sequencer.find

    async def counting(order_id: str) -> OrderState | None:
        looked_up.append(order_id)
        return await find(order_id)

    sequencer.find = counting
    sell = await orders.post("/orders/", json={"side": "sell", "quantity": 1, "price": 2})
    filled = (await sell.json())["order_id"]
    await orders.post("/orders/", json={"side": "buy", "quantity": 1, "price": 2})
    response = await orders.put(f"/orders/{filled}/", json={"price": 3})
    assert (response.status, looked_up) == (409, [])
    response = await orders.delete(f"/orders/{filled}/")
    assert (response.status, looked_up) == (409, [filled])
    answer = await response.json()
    assert answer["error"]["details"] == {"status": "FILLED"}


async def test_a_repeated_transfer_answers_the_original_and_moves_nothing(
        settings: Settings, aiohttp_client: MakeClient) -> None:
    funded = await aiohttp_client(create_app(msgspec.structs.replace(settings, funding="on")))
    sequencer = funded.app[api.SEQUENCER]
    first = await sequencer.submit(TransferFunds(transfer_id="t1", user_id=USER, asset="USD",
                                                 amount=7 * BASE_UNIT))
    again = await sequencer.submit(TransferFunds(transfer_id="t1", user_id=USER, asset="USD",
                                                 amount=5 * BASE_UNIT))
    assert (first.repeat, first.refusal, again.repeat, again.batch) == (
        False, None, True, None)
    assert first.transfer is not None
    assert (first.transfer.amount, first.balance) == (7 * BASE_UNIT, (7 * BASE_UNIT, 0))
    assert (again.transfer, again.balance) == (first.transfer, first.balance)
