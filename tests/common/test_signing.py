"""Verifying signed requests: the matrix of good and refused signatures."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

from common.http import ApiError
from common.keyring import Keyring
from common.keys import IssuedKey, SecretBox
from common.signing import ReplayGuard, Verifier, message, signature
from tests.common.auth import SECRET_KEY, entry, issue, record_of
from tests.signing import sign

NOW = 1_764_480_000.0  # seconds; the server's clock in these tests
NOW_MS = str(int(NOW * 1000))
WINDOW = 5.0
BODY = b'{"side":"buy","quantity":1,"price":"1.00"}'


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(SECRET_KEY)


@pytest.fixture
def keyring(box: SecretBox) -> Keyring:
    return Keyring(box)


@pytest.fixture
def key(keyring: Keyring, box: SecretBox) -> IssuedKey:
    return issue(keyring, box)


@pytest.fixture
def verifier(keyring: Keyring) -> Verifier:
    return Verifier(keyring, WINDOW, clock=lambda: NOW)


def refusal(verifier: Verifier, key_id: str | None, timestamp: str | None, sign_: str | None,
            method: str = "POST", path_qs: str = "/orders/", body: bytes = BODY) -> ApiError:
    with pytest.raises(ApiError) as refused:
        verifier.verify(key_id, timestamp, sign_, method, path_qs, body)
    return refused.value


def test_a_good_signature_gives_the_keys_identity(verifier: Verifier, key: IssuedKey) -> None:
    caller = verifier.verify(key.key_id, NOW_MS, sign(key.secret, NOW_MS, "POST", "/orders/",
                                                      BODY), "POST", "/orders/", BODY)
    assert (caller.key_id, caller.user_id, caller.role) == (key.key_id, key.user_id, "trader")


def test_the_contracts_example_string_is_what_is_signed() -> None:
    signed = message("1764480000000", "POST", "/orders/?x=1", b'{"side":"buy"}')
    assert signed == b'1764480000000POST/orders/?x=1{"side":"buy"}'
    assert signature(b"s", signed) == sign("s", "1764480000000", "POST", "/orders/?x=1",
                                           b'{"side":"buy"}')


@pytest.mark.parametrize(("method", "path_qs", "body"), [
    ("PUT", "/orders/", BODY),  # another method
    ("POST", "/orders/?symbol=X", BODY),  # another query
    ("POST", "/orders", BODY),  # another path
    ("POST", "/orders/", BODY.replace(b"1.00", b"9.00")),  # another body
])
def test_a_signature_covers_method_path_query_and_body(
        verifier: Verifier, key: IssuedKey, method: str, path_qs: str, body: bytes) -> None:
    signed = sign(key.secret, NOW_MS, "POST", "/orders/", BODY)
    error = refusal(verifier, key.key_id, NOW_MS, signed, method, path_qs, body)
    assert (error.status, error.code) == (401, "INVALID_SIGNATURE")


def test_unknown_revoked_and_wrong_are_refused_alike(
        verifier: Verifier, keyring: Keyring, box: SecretBox, key: IssuedKey) -> None:
    wrong = refusal(verifier, key.key_id, NOW_MS, sign("not the secret", NOW_MS, "POST",
                                                       "/orders/", BODY))
    unknown = refusal(verifier, str(uuid.uuid4()), NOW_MS,
                      sign(key.secret, NOW_MS, "POST", "/orders/", BODY))
    keyring.apply(entry(record_of(key, box, revoked_at="2026-12-04T10:01:00Z")))
    revoked = refusal(verifier, key.key_id, NOW_MS,
                      sign(key.secret, NOW_MS, "POST", "/orders/", BODY))
    answers = {(e.status, e.code, e.message, str(e.details)) for e in (wrong, unknown, revoked)}
    assert answers == {(401, "INVALID_SIGNATURE", "the key or the signature is not valid", "{}")}


def test_a_deleted_key_is_refused(verifier: Verifier, keyring: Keyring, box: SecretBox,
                                  key: IssuedKey) -> None:
    keyring.apply(entry(record_of(key, box), deleted=True))
    error = refusal(verifier, key.key_id, NOW_MS,
                    sign(key.secret, NOW_MS, "POST", "/orders/", BODY))
    assert error.code == "INVALID_SIGNATURE"


@pytest.mark.parametrize("offset_ms", [-5_001, 5_001, -3_600_000, 3_600_000])
def test_a_timestamp_outside_the_window_is_refused(verifier: Verifier, key: IssuedKey,
                                                   offset_ms: int) -> None:
    stamp = str(int(NOW_MS) + offset_ms)
    error = refusal(verifier, key.key_id, stamp, sign(key.secret, stamp, "POST", "/orders/",
                                                      BODY))
    assert (error.status, error.code) == (401, "TIMESTAMP_OUT_OF_WINDOW")


@pytest.mark.parametrize("offset_ms", [-5_000, 5_000])
def test_a_timestamp_at_the_windows_edge_passes(verifier: Verifier, key: IssuedKey,
                                                offset_ms: int) -> None:
    stamp = str(int(NOW_MS) + offset_ms)
    verifier.verify(key.key_id, stamp, sign(key.secret, stamp, "POST", "/orders/", BODY),
                    "POST", "/orders/", BODY)


def test_a_signature_is_accepted_once(verifier: Verifier, key: IssuedKey) -> None:
    signed = sign(key.secret, NOW_MS, "POST", "/orders/", BODY)
    verifier.verify(key.key_id, NOW_MS, signed, "POST", "/orders/", BODY)
    error = refusal(verifier, key.key_id, NOW_MS, signed)
    assert (error.status, error.code) == (401, "REPLAYED_REQUEST")


def test_a_refused_signature_is_not_remembered(verifier: Verifier, key: IssuedKey) -> None:
    """A wrong signature must not use up the right one (nor fill the replay memory)."""
    signed = sign(key.secret, NOW_MS, "POST", "/orders/", BODY)
    refusal(verifier, str(uuid.uuid4()), NOW_MS, signed)
    verifier.verify(key.key_id, NOW_MS, signed, "POST", "/orders/", BODY)


@pytest.mark.parametrize(("key_id", "timestamp", "signed", "code"), [
    (None, NOW_MS, "0" * 64, "AUTH_REQUIRED"),
    ("KEY", None, "0" * 64, "AUTH_REQUIRED"),
    ("KEY", NOW_MS, None, "AUTH_REQUIRED"),
    ("", NOW_MS, "0" * 64, "AUTH_REQUIRED"),
    ("not-a-key-id", NOW_MS, "0" * 64, "INVALID_KEY"),
    ("KEY", NOW_MS, "0" * 63, "INVALID_SIGNATURE"),
    ("KEY", NOW_MS, "A" * 64, "INVALID_SIGNATURE"),  # lowercase hex only
    ("KEY", NOW_MS, "g" * 64, "INVALID_SIGNATURE"),
    ("KEY", "1764480000.5", "0" * 64, "TIMESTAMP_OUT_OF_WINDOW"),
    ("KEY", "-1764480000000", "0" * 64, "TIMESTAMP_OUT_OF_WINDOW"),
    ("KEY", "1" * 400, "0" * 64, "TIMESTAMP_OUT_OF_WINDOW"),
    ("KEY", "١٧٦٤٤٨٠٠٠٠٠٠٠", "0" * 64, "TIMESTAMP_OUT_OF_WINDOW"),  # other digits
])
def test_malformed_parts_are_refused_with_their_code(
        verifier: Verifier, key: IssuedKey, key_id: str | None, timestamp: str | None,
        signed: str | None, code: str) -> None:
    key_id = key.key_id if key_id == "KEY" else key_id
    error = refusal(verifier, key_id, timestamp, signed)
    assert (error.status, error.code) == (401, code)


def test_the_replay_guard_forgets_after_its_lifetime_and_stays_bounded() -> None:
    guard = ReplayGuard(lifetime=10.0, capacity=3)
    assert guard.admit(b"a", 0.0)
    assert not guard.admit(b"a", 5.0)
    assert guard.admit(b"b", 1.0)
    assert guard.admit(b"c", 2.0)
    with pytest.raises(ApiError) as full:
        guard.admit(b"d", 3.0)  # full of unexpired entries: refuse rather than forget one
    assert full.value.status == 503
    assert guard.admit(b"d", 10.0)
    assert len(guard) == 3
    assert guard.admit(b"a", 11.0)  # "b" expired
    assert guard.admit(b"e", 1_000.0)
    assert len(guard) == 1


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_the_readmes_openssl_recipe_signs_as_the_python_client_does() -> None:
    secret, stamp, body = "s3cr3t-Value_x", "1764480000000", '{"side":"buy","quantity":1}'
    script = ('printf %s "$TS$METHOD$PATH_QS$BODY" '
              '| openssl dgst -sha256 -hmac "$SECRET" | sed "s/^.*= //"')
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "TS": stamp, "METHOD": "POST",
                               "PATH_QS": "/orders/?symbol=DEFAULT", "BODY": body,
                               "SECRET": secret})
    assert done.stdout.strip() == sign(secret, stamp, "POST", "/orders/?symbol=DEFAULT",
                                       body.encode())


def test_the_websocket_auth_message_is_verified_the_same_way(verifier: Verifier,
                                                             key: IssuedKey) -> None:
    signed = sign(key.secret, NOW_MS, "GET", "/ws/")
    caller = verifier.verify_socket(key.key_id, int(NOW_MS), signed)
    assert caller.key_id == key.key_id
    with pytest.raises(ApiError) as replayed:
        verifier.verify_socket(key.key_id, NOW_MS, signed)
    assert replayed.value.code == "REPLAYED_REQUEST"
    for fields, code in [((key.key_id, True, signed), "AUTH_REQUIRED"),
                         ((key.key_id, NOW_MS, 7), "AUTH_REQUIRED"),
                         (([key.key_id], NOW_MS, signed), "AUTH_REQUIRED"),
                         ((key.key_id, NOW_MS, sign(key.secret, NOW_MS, "GET", "/ws")),
                          "INVALID_SIGNATURE")]:
        with pytest.raises(ApiError) as refused:
            verifier.verify_socket(*fields)
        assert refused.value.code == code
