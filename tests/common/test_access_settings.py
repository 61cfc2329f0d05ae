"""The access settings: protected mode, range checks, a hidden secret key."""

from __future__ import annotations

import pytest

from common.config import check_protected_mode, load_settings
from tests.common.auth import SECRET_KEY


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.1.2.3", "exchange.example"])
def test_without_auth_a_non_loopback_host_refuses_naming_ex_auth(host: str) -> None:
    with pytest.raises(ValueError, match="EX_AUTH"):
        check_protected_mode(load_settings({"EX_HOST": host}))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_without_auth_loopback_is_allowed(host: str) -> None:
    check_protected_mode(load_settings({"EX_HOST": host}))


def test_with_auth_any_host_is_allowed_given_a_secret_key() -> None:
    check_protected_mode(load_settings({"EX_HOST": "0.0.0.0", "EX_AUTH": "on",
                                        "EX_SECRET_KEY": SECRET_KEY}))
    with pytest.raises(ValueError, match="EX_SECRET_KEY"):
        check_protected_mode(load_settings({"EX_HOST": "0.0.0.0", "EX_AUTH": "on"}))


def test_the_secret_key_never_appears_in_repr() -> None:
    settings = load_settings({"EX_AUTH": "on", "EX_SECRET_KEY": SECRET_KEY})
    assert settings.secret_key == SECRET_KEY
    assert SECRET_KEY not in repr(settings)
    assert "secret_key='***'" in repr(settings)
    assert "secret_key=None" in repr(load_settings({}))


def test_access_defaults() -> None:
    settings = load_settings({})
    assert (settings.auth, settings.auth_window, settings.secret_key) == ("off", 5.0, None)
    assert (settings.rate_private, settings.rate_public, settings.rate_auth_failures) == (
        "30/second", "20/second", "10/minute")


@pytest.mark.parametrize(("variable", "value"), [
    ("EX_AUTH", "yes"), ("EX_AUTH_WINDOW", "61"), ("EX_AUTH_WINDOW", "0"),
    ("EX_AUTH_WINDOW", "nan"), ("EX_SECRET_KEY", "short"), ("EX_RATE_PRIVATE", "30"),
    ("EX_RATE_PUBLIC", "0/second"), ("EX_RATE_AUTH_FAILURES", "10/fortnight"),
    ("EX_RATE_PUBLIC", "1e3/second"),
])
def test_access_settings_out_of_range_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=variable):
        load_settings({variable: value})
