"""Per-user subjects: one safe token per user, whatever the user id holds."""

import uuid

from common import subjects


def test_a_uuid_user_id_is_its_own_token_and_anything_else_is_hashed() -> None:
    user = str(uuid.uuid4())
    assert subjects.user_orders(user) == f"md.orders.{user}"
    for unsafe in ("a.b", "*", ">", "with space", user.upper(), ""):
        subject = subjects.user_orders(unsafe)
        prefix, token = subject.rsplit(".", 1)
        assert prefix == "md.orders"
        assert token.startswith("h")
        assert len(token) == 65
        assert token[1:].isalnum()
    assert subjects.user_orders("a.b") != subjects.user_orders("a.c")
