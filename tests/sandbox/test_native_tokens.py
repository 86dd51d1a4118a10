"""``requestToken``: the TokenRequest checks of the token-request-spec, with the spec's MAC vectors."""

from __future__ import annotations

from typing import Any

import pytest

from authserver.core.capabilities import Capability
from authserver.core.keys import AblyKey
from authserver.errors import AuthServerError
from authserver.sandbox.grants import Keyring
from authserver.sandbox.limits import SandboxLimits
from authserver.sandbox.native_tokens import IssuedTokens, TokenIssuer, token_details

KEY = AblyKey("appId.keyId", "secretSecretSecret")
TS = 1_700_000_000_000
NONCE = "0123456789abcdef"

# Spec 4.2 vectors, checked against both real clients.
FULL: dict[str, Any] = {
    "keyName": KEY.name,
    "ttl": 3600000,
    "capability": '{"*":["*"]}',
    "clientId": "user-1",
    "timestamp": TS,
    "nonce": NONCE,
    "mac": "AJVKUfOVl6ywRKP/zRIx3GkqM5hv2QLsyqvM1zsIXR0=",
}
MINIMAL: dict[str, Any] = {
    "keyName": KEY.name,
    "ttl": None,
    "capability": None,
    "clientId": None,
    "timestamp": TS,
    "nonce": NONCE,
    "mac": "4YhkefzNtx+5zCS9Tst9S0JkBzfuv/+g3tnkCoQCSjE=",
}
PYTHON_SPACED = {**FULL, "capability": '{"*": ["*"]}', "mac": "rXudwUqC2EXlP+/wnmV004Lry/aQxvtV3ye1onzjW8g="}


def issuer(key_capability: Capability | None = None) -> TokenIssuer:
    capabilities = {KEY.name: key_capability} if key_capability else None
    return TokenIssuer(Keyring([KEY], capabilities), SandboxLimits(), IssuedTokens(100))


@pytest.mark.parametrize("request_", [FULL, MINIMAL, PYTHON_SPACED], ids=["full", "minimal", "python-spaced"])
def test_spec_vectors_are_exchanged_for_a_token(request_: dict[str, Any]) -> None:
    token, grant = issuer().exchange(KEY.name, request_, now_ms=TS + 1000)
    details = token_details(token, grant)
    assert details["token"].startswith("sbxtok_")
    assert details["issued"] == TS + 1000
    assert details["expires"] == TS + 1000 + 3_600_000
    assert details["keyName"] == KEY.name
    assert details.get("clientId") == request_["clientId"]


def test_granted_capability_is_the_intersection_with_the_key() -> None:
    key_capability = Capability.parse('{"*":["subscribe","publish"]}')
    _, grant = issuer(key_capability).exchange(KEY.name, FULL, now_ms=TS)
    assert grant.capability.to_json() == '{"*":["publish","subscribe"]}'


REFUSALS: list[tuple[str, dict[str, Any], int]] = [
    ("bad mac", {**FULL, "mac": "AAAA" + FULL["mac"][4:]}, 40101),
    ("capability changed after signing", {**FULL, "capability": '{"*":["publish"]}'}, 40101),
    ("no mac and no basic auth", {k: v for k, v in FULL.items() if k != "mac"}, 40101),
    ("keyName differs from the URL", {**FULL, "keyName": "appId.other"}, 40000),
    ("short nonce", {**FULL, "nonce": "abc"}, 40000),
    ("timestamp not a number", {**FULL, "timestamp": "soon"}, 40000),
]


@pytest.mark.parametrize(("request_", "code"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_malformed_or_forged_requests_are_refused(request_: dict[str, Any], code: int) -> None:
    with pytest.raises(AuthServerError) as caught:
        issuer().exchange(KEY.name, request_, now_ms=TS)
    assert caught.value.code == code


@pytest.mark.parametrize("skew_ms", [120_001, -120_001])
def test_timestamp_outside_two_minutes_is_refused_40104(skew_ms: int) -> None:
    with pytest.raises(AuthServerError) as caught:
        issuer().exchange(KEY.name, FULL, now_ms=TS + skew_ms)
    assert caught.value.code == 40104


def test_a_nonce_and_timestamp_pair_is_single_use_40105() -> None:
    service = issuer()
    service.exchange(KEY.name, FULL, now_ms=TS)
    with pytest.raises(AuthServerError) as caught:
        service.exchange(KEY.name, FULL, now_ms=TS + 10)
    assert caught.value.code == 40105


def test_the_same_nonce_with_a_new_timestamp_is_a_new_request() -> None:
    """Ably's replay check is on nonce *and* timestamp (ably-spec 8.5)."""
    service = issuer()
    service.exchange(KEY.name, signed(), now_ms=TS)
    token, _ = service.exchange(KEY.name, signed(timestamp=TS + 1), now_ms=TS + 5)
    assert token.startswith("sbxtok_")


def test_unknown_key_in_the_url_is_refused_40101() -> None:
    with pytest.raises(AuthServerError) as caught:
        issuer().exchange("appId.nope", FULL, now_ms=TS)
    assert caught.value.code == 40101


def signed(**fields: Any) -> dict[str, Any]:
    from authserver.core.tokenrequests import compute_mac

    body: dict[str, Any] = {"keyName": KEY.name, "timestamp": TS, "nonce": NONCE, **fields}
    body["mac"] = compute_mac(
        key_name=KEY.name,
        ttl=body.get("ttl"),
        capability=body.get("capability"),
        client_id=body.get("clientId"),
        timestamp=body["timestamp"],
        nonce=NONCE,
        secret=KEY.secret,
    )
    return body


@pytest.mark.parametrize(
    ("fields", "code", "status"),
    [
        ({"ttl": 86_400_001}, 40003, 400),
        ({"ttl": 0}, 40003, 400),
        ({"capability": '{"*":["nope"]}'}, 40000, 400),
        ({"clientId": ""}, 40012, 400),
    ],
    ids=["ttl above 24 h", "ttl zero", "invalid capability", "empty clientId"],
)
def test_signed_but_unacceptable_requests_are_refused(fields: dict[str, Any], code: int, status: int) -> None:
    with pytest.raises(AuthServerError) as caught:
        issuer().exchange(KEY.name, signed(**fields), now_ms=TS)
    assert (caught.value.code, caught.value.status) == (code, status)


def test_capability_outside_the_key_is_refused_40160() -> None:
    service = issuer(Capability.parse('{"chat:*":["subscribe"]}'))
    with pytest.raises(AuthServerError) as caught:
        service.exchange(KEY.name, signed(capability='{"admin":["publish"]}'), now_ms=TS)
    assert (caught.value.code, caught.value.status) == (40160, 401)


def test_numeric_strings_are_accepted_as_the_docs_show() -> None:
    _, grant = issuer().exchange(KEY.name, signed(ttl="60000"), now_ms=TS)
    assert grant.ttl_ms == 60000
