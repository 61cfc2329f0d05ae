"""The users svc_stream instances watch, as svc_orders keeps them."""

from common.messages import OrdersInterest
from svc_orders.interest import Interest


def test_users_are_watched_while_an_announcement_naming_them_lasts() -> None:
    now = [100.0]
    interest = Interest(clock=lambda: now[0])
    assert interest.users() == frozenset()
    interest.announce(OrdersInterest(instance="a", user_ids=["u1", "u2"], ttl=2.0))
    interest.announce(OrdersInterest(instance="b", user_ids=["u3"], ttl=5.0))
    assert interest.users() == {"u1", "u2", "u3"}
    interest.announce(OrdersInterest(instance="a", user_ids=["u1"], ttl=2.0))  # u2 left
    assert interest.users() == {"u1", "u3"}
    now[0] = 102.5  # instance a stopped announcing
    assert interest.users() == {"u3"}
    now[0] = 106.0
    assert interest.users() == frozenset()
