"""The order API benchmark's signed orders: each a valid signature, none used twice, all
within the server's window, and the same mix of orders as the unsigned load."""

import random
from collections import Counter
from pathlib import Path

import msgspec

from ops.bench.api.load import PRICES, QUANTITIES, order_body
from ops.bench.api.signing import Key, presign, signed_lines
from tests.signing import sign

KEY = Key("5b0e4a9e-0d4c-4b8a-9d55-6a0f0f3d9b11", "bench-secret",
          "7d1c3b9e-0d4c-4b8a-9d55-6a0f0f3d9b12")


def test_presigned_orders_are_valid_unique_and_alternate_sides(tmp_path: Path) -> None:
    path = presign(KEY, 5_000, tmp_path / "orders.tsv")
    lines = signed_lines(path, 0, 1)
    assert len(lines) == 5_000
    signatures = [headers["EX-ACCESS-SIGN"] for headers, _ in lines]
    assert len(set(signatures)) == len(signatures)
    for headers, body in lines[:200]:
        assert headers["EX-ACCESS-SIGN"] == sign(KEY.secret, headers["EX-ACCESS-TIMESTAMP"],
                                                 "POST", "/orders/", body)
    stamps = {int(headers["EX-ACCESS-TIMESTAMP"]) for headers, _ in lines}
    assert max(stamps) - min(stamps) < 1_000  # well within any window
    orders = [msgspec.json.decode(body) for _, body in lines]
    assert [order["side"] for order in orders[:4]] == ["buy", "sell", "buy", "sell"]
    assert {order["quantity"] for order in orders} == set(QUANTITIES)
    assert len(Counter(order["price"] for order in orders)) == len(PRICES)
    halves = signed_lines(path, 0, 2), signed_lines(path, 1, 2)  # two workers' parts
    assert [len(part) for part in halves] == [2_500, 2_500]


def test_plain_orders_may_name_the_keys_user_as_the_signed_ones_carry_it() -> None:
    """The fair comparison: plain orders for the key's user, the same mix otherwise."""
    plain = msgspec.json.decode(order_body(random.Random(1), 0, KEY.user_id))
    assert (plain["side"], plain["user_id"]) == ("buy", KEY.user_id)
    assert "user_id" not in msgspec.json.decode(order_body(random.Random(1), 0))
