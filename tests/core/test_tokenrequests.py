"""Signed TokenRequests (ably-spec.md section 4): the three MAC vectors, then the request itself."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from functools import partial
from typing import Any

import pytest

from authserver.core.keys import parse_api_key
from authserver.core.tokenrequests import compute_mac, create_token_request

VECTOR_KEY = parse_api_key("appId.keyId:secretSecretSecret")
VECTOR_MACS = ("AJVKUfOVl6ywRKP/zRIx3GkqM5hv2QLsyqvM1zsIXR0=", "4YhkefzNtx+5zCS9Tst9S0JkBzfuv/+g3tnkCoQCSjE=")
ALLOWED_KEYS = {"keyName", "ttl", "capability", "clientId", "timestamp", "nonce", "mac"}

vector_mac = partial(
    compute_mac,
    key_name="appId.keyId",
    timestamp=1_700_000_000_000,
    nonce="0123456789abcdef",
    secret="secretSecretSecret",
)

# --- compute_mac: the verified vectors of spec 4.2 ------------------------------------------------


@pytest.mark.parametrize(
    ("ttl", "capability", "client_id", "mac"),
    [
        (3_600_000, '{"*":["*"]}', "user-1", "AJVKUfOVl6ywRKP/zRIx3GkqM5hv2QLsyqvM1zsIXR0="),
        (None, None, None, "4YhkefzNtx+5zCS9Tst9S0JkBzfuv/+g3tnkCoQCSjE="),
        (3_600_000, '{"*": ["*"]}', "user-1", "rXudwUqC2EXlP+/wnmV004Lry/aQxvtV3ye1onzjW8g="),
    ],
    ids=["all-fields", "optional-fields-absent", "spaced-capability"],
)
def test_compute_mac_matches_the_spec_vectors(
    ttl: int | None, capability: str | None, client_id: str | None, mac: str
) -> None:
    assert vector_mac(ttl=ttl, capability=capability, client_id=client_id) == mac


def test_compute_mac_accepts_numeric_strings_as_sent_by_clients() -> None:
    as_strings = compute_mac(
        key_name="appId.keyId",
        ttl="3600000",
        capability='{"*":["*"]}',
        client_id="user-1",
        timestamp="1700000000000",
        nonce="0123456789abcdef",
        secret="secretSecretSecret",
    )
    assert as_strings == "AJVKUfOVl6ywRKP/zRIx3GkqM5hv2QLsyqvM1zsIXR0="


@pytest.mark.parametrize(
    "change",
    [
        {"ttl": 3_600_001},
        {"capability": '{"*":["publish"]}'},
        {"client_id": "user-2"},
        {"client_id": None},
        {"timestamp": 1_700_000_000_001},
        {"nonce": "0123456789abcdeF"},
        {"secret": "secretSecretSecreT"},
        {"key_name": "appId.keyId2"},
    ],
)
def test_every_field_contributes_to_the_mac(change: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"ttl": 3_600_000, "capability": '{"*":["*"]}', "client_id": "user-1", **change}
    assert vector_mac(**fields) != "AJVKUfOVl6ywRKP/zRIx3GkqM5hv2QLsyqvM1zsIXR0="


# --- create_token_request -------------------------------------------------------------------------

make_request = partial(
    create_token_request,
    VECTOR_KEY,
    capability='{"chat:*":["publish","subscribe"]}',
    ttl_ms=600_000,
    now_ms=1_800_000_000_000,
)


def test_create_token_request_with_the_vector_inputs_gives_the_vector_mac() -> None:
    request = create_token_request(
        VECTOR_KEY,
        capability='{"*":["*"]}',
        client_id="user-1",
        ttl_ms=3_600_000,
        now_ms=1_700_000_000_000,
        nonce="0123456789abcdef",
    )
    assert request.to_dict() == {
        "keyName": "appId.keyId",
        "ttl": 3_600_000,
        "capability": '{"*":["*"]}',
        "clientId": "user-1",
        "timestamp": 1_700_000_000_000,
        "nonce": "0123456789abcdef",
        "mac": "AJVKUfOVl6ywRKP/zRIx3GkqM5hv2QLsyqvM1zsIXR0=",
    }


def test_token_request_dict_has_exactly_the_keys_both_clients_accept() -> None:
    data = make_request(client_id="alice").to_dict()
    assert set(data) == ALLOWED_KEYS
    assert data["keyName"] == "appId.keyId"
    assert data["ttl"] == 600_000
    assert data["timestamp"] == 1_800_000_000_000
    assert data["capability"] == '{"chat:*":["publish","subscribe"]}'
    assert data["clientId"] == "alice"


def test_token_request_dict_omits_client_id_when_none() -> None:
    data = make_request(client_id=None).to_dict()
    assert set(data) == ALLOWED_KEYS - {"clientId"}


def test_token_request_dict_is_json_with_integer_ttl_and_timestamp() -> None:
    data = json.loads(json.dumps(make_request(client_id="alice").to_dict()))
    assert isinstance(data["ttl"], int)
    assert isinstance(data["timestamp"], int)
    assert isinstance(data["capability"], str)


def test_nonce_is_at_least_16_characters_and_fresh_each_call() -> None:
    nonces = [make_request(client_id="alice").nonce for _ in range(20)]
    assert all(len(nonce) >= 16 for nonce in nonces)
    assert len(set(nonces)) == len(nonces)


def spec_mac(secret: str, *fields: object) -> str:
    """Spec 4.2 written out: every field (absent: empty) followed by a newline, HMAC-SHA256, base64."""
    text = "".join(("" if field is None else str(field)) + "\n" for field in fields)
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()).decode()


@pytest.mark.parametrize(
    ("fields", "mac"),
    [
        (("appId.keyId", 3_600_000, '{"*":["*"]}', "user-1", 1_700_000_000_000, "0123456789abcdef"), VECTOR_MACS[0]),
        (("appId.keyId", None, None, None, 1_700_000_000_000, "0123456789abcdef"), VECTOR_MACS[1]),
    ],
    ids=["all-fields", "optional-fields-absent"],
)
def test_the_written_out_spec_mac_reproduces_the_spec_vectors(fields: tuple[object, ...], mac: str) -> None:
    assert spec_mac("secretSecretSecret", *fields) == mac


@pytest.mark.parametrize("client_id", ["alice", None])
def test_mac_of_a_created_request_is_the_spec_mac_of_its_fields(client_id: str | None) -> None:
    data = make_request(client_id=client_id).to_dict()
    fields = (data["keyName"], data["ttl"], data["capability"], data.get("clientId"), data["timestamp"], data["nonce"])
    assert fields[:5] == ("appId.keyId", 600_000, '{"chat:*":["publish","subscribe"]}', client_id, 1_800_000_000_000)
    assert data["mac"] == spec_mac("secretSecretSecret", *fields)


def test_token_request_never_carries_the_secret() -> None:
    request = make_request(client_id="alice")
    assert VECTOR_KEY.secret not in json.dumps(request.to_dict())
    assert VECTOR_KEY.secret not in repr(request)
