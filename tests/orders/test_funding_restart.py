"""Funding on: a restart (newest snapshot plus the journal after it) rebuilds the
balances exactly, and a transfer id stays spent across it."""

import msgspec

from common.config import Settings
from svc_orders import api
from tests.orders.test_durability import USERS, Client, random_traffic, started


def balances(client: Client) -> bytes:
    funds = client.app[api.SEQUENCER].engine.funds
    assert funds is not None
    return msgspec.msgpack.encode(funds.capture())


async def test_restart_rebuilds_balances_and_spent_transfer_ids(settings: Settings) -> None:
    settings = msgspec.structs.replace(settings, funding="on")
    first = await started(settings)
    for n, user in enumerate(USERS):
        for asset in ("USD", "DEFAULT"):
            response = await first.post(f"/accounts/{user}/deposits/", json={
                "asset": asset, "amount": "100000", "transfer_id": f"d{n}{asset}"})
            assert response.status == 201, await response.text()
    await random_traffic(first, 120, seed=2)  # snapshot_every=50: snapshots and a tail
    before = balances(first)
    await first.close()

    second = await started(settings)
    try:
        assert balances(second) == before
        second.app[api.SEQUENCER].engine.check()
        repeat = await second.post(f"/accounts/{USERS[0]}/deposits/", json={
            "asset": "USD", "amount": "1", "transfer_id": "d0USD"})
        assert repeat.status == 200
        assert (await repeat.json())["amount"] == "100000.000000"
        assert balances(second) == before
    finally:
        await second.close()
