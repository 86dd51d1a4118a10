"""Ably JWTs (ably-spec.md section 2): the known-answer vector, then every token checked by PyJWT."""

from __future__ import annotations

import base64
import json
import time
from functools import partial
from typing import Any

import jwt
import pytest

from authserver.core.callers import Identity
from authserver.core.issuance import Issuer, TokenParams
from authserver.core.keys import parse_api_key
from authserver.core.policy import load_policy
from authserver.core.tokens import IssuedToken, TokenSigner, sign_jwt

VECTOR_KEY = parse_api_key("appId.keyId:secretSecretSecret")
VECTOR_JWT = (
    "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFwcElkLmtleUlkIiwidHlwIjoiSldUIn0"
    ".eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwieC1hYmx5LWNhcGFiaWxpdHkiOiJ7XCIqXCI6W1wiKlwiXX0iLCJ4LWFibHktY2xpZW50SWQiOiJ1c2VyLTEifQ"
    ".DexJ5kRhfoffT98cBl0SWfW4gkTGXonGQluEMgc8KoI"
)
ALL = '{"*":["*"]}'

KEY = parse_api_key("myApp.myKey:a-test-secret-that-is-long-enough-for-hs256")
OTHER_KEY = parse_api_key("myApp.myKey:another-secret-that-is-long-enough-for-hs256")


def _now() -> int:
    # PyJWT's decode reads the wall clock (it has no clock parameter), so tokens it must accept
    # are issued around now.
    return int(time.time())


def sign_now(**overrides: Any) -> str:
    """A token of KEY issued now for an hour, with any argument of sign_jwt overridden."""
    issued = _now()
    args: dict[str, Any] = {
        "capability": '{"chat:*":["publish","subscribe"]}',
        "client_id": "alice",
        "issued_at": issued,
        "expires_at": issued + 3600,
    }
    args.update(overrides)
    return sign_jwt(KEY, **args)


def decode(token: str, secret: str = KEY.secret) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, secret, algorithms=["HS256"])
    return claims


# --- the known-answer vector of spec 2.2 ----------------------------------------------------------

sign_vector = partial(sign_jwt, VECTOR_KEY, capability=ALL, issued_at=1_700_000_000, expires_at=1_700_003_600)


def test_sign_jwt_reproduces_the_spec_vector_exactly() -> None:
    assert sign_vector(client_id="user-1") == VECTOR_JWT


def test_token_signer_reproduces_the_spec_vector_exactly() -> None:
    signer = TokenSigner(VECTOR_KEY)
    token = signer.sign(capability=ALL, client_id="user-1", issued_at=1_700_000_000, expires_at=1_700_003_600)
    assert token == VECTOR_JWT


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the vector's secret is 18 bytes
def test_spec_vector_verifies_with_pyjwt() -> None:
    # The vector's exp lies in the past: the signature is checked, the expiry is not.
    claims = jwt.decode(VECTOR_JWT, "secretSecretSecret", algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {
        "iat": 1_700_000_000,
        "exp": 1_700_003_600,
        "x-ably-capability": ALL,
        "x-ably-clientId": "user-1",
    }
    assert jwt.get_unverified_header(VECTOR_JWT) == {"alg": "HS256", "kid": "appId.keyId", "typ": "JWT"}


# --- header and claims, as PyJWT sees them --------------------------------------------------------


def test_header_is_exactly_alg_kid_typ_with_the_key_name_as_kid() -> None:
    assert jwt.get_unverified_header(sign_now()) == {"alg": "HS256", "kid": "myApp.myKey", "typ": "JWT"}


def test_claims_are_exactly_iat_exp_capability_and_client_id() -> None:
    issued = _now()
    token = sign_now(issued_at=issued, expires_at=issued + 600)
    assert decode(token) == {
        "iat": issued,
        "exp": issued + 600,
        "x-ably-capability": '{"chat:*":["publish","subscribe"]}',
        "x-ably-clientId": "alice",
    }


def test_capability_claim_is_a_json_string_not_an_object() -> None:
    capability = decode(sign_now())["x-ably-capability"]
    assert isinstance(capability, str)
    assert json.loads(capability) == {"chat:*": ["publish", "subscribe"]}


def test_capability_string_is_carried_verbatim() -> None:
    spaced = '{"*": ["*"]}'  # whatever the caller passes is what Ably gets
    assert decode(sign_now(capability=spaced))["x-ably-capability"] == spaced


def test_non_ascii_capability_round_trips() -> None:
    capability = '{"chät:*":["publish"]}'
    assert decode(sign_now(capability=capability))["x-ably-capability"] == capability


def test_no_client_id_claim_when_client_id_is_none() -> None:
    claims = decode(sign_now(client_id=None))
    assert "x-ably-clientId" not in claims
    assert set(claims) == {"iat", "exp", "x-ably-capability"}


def test_extra_claims_are_added_beside_the_ably_claims() -> None:
    extra = {"x-ably-revocation-key": "group-7", "ably.channel.chat:*": '{"mod":true}'}
    claims = decode(sign_now(extra_claims=extra))
    assert claims["x-ably-revocation-key"] == "group-7"
    assert claims["ably.channel.chat:*"] == '{"mod":true}'
    assert claims["x-ably-clientId"] == "alice"
    assert set(claims) == {"iat", "exp", "x-ably-capability", "x-ably-clientId", *extra}


def test_token_signed_with_one_key_fails_verification_with_another() -> None:
    token = sign_now()
    with pytest.raises(jwt.InvalidSignatureError):
        decode(token, OTHER_KEY.secret)


def test_claims_swapped_in_from_another_token_fail_verification() -> None:
    header, _, signature = sign_now(client_id="alice").split(".")
    _, forged_payload, _ = sign_now(client_id="mallory").split(".")
    with pytest.raises(jwt.InvalidSignatureError):
        decode(f"{header}.{forged_payload}.{signature}")


def test_signer_is_reusable_and_deterministic() -> None:
    signer = TokenSigner(KEY)
    issued = _now()
    sign = partial(signer.sign, capability=ALL, issued_at=issued, expires_at=issued + 60)
    first, second, again = sign(client_id="a"), sign(client_id="b"), sign(client_id="a")
    assert first == again != second
    assert decode(first)["x-ably-clientId"] == "a"
    assert decode(second)["x-ably-clientId"] == "b"


def test_signer_repr_names_the_key_but_not_its_secret() -> None:
    assert repr(TokenSigner(KEY)) == "TokenSigner(key='myApp.myKey')"
    assert KEY.secret not in repr(TokenSigner(KEY))


# --- IssuedToken ----------------------------------------------------------------------------------

issued_token = partial(
    IssuedToken,
    token=VECTOR_JWT,
    key_name="appId.keyId",
    issued_ms=1_700_000_000_000,
    expires_ms=1_700_003_600_000,
    capability=ALL,
)


def test_details_are_token_details_json_in_milliseconds() -> None:
    assert issued_token(client_id="user-1").details() == {
        "token": VECTOR_JWT,
        "keyName": "appId.keyId",
        "issued": 1_700_000_000_000,
        "expires": 1_700_003_600_000,
        "capability": ALL,
        "clientId": "user-1",
    }


def test_details_omit_client_id_when_none() -> None:
    details = issued_token(client_id=None).details()
    assert set(details) == {"token", "keyName", "issued", "expires", "capability"}


def test_repr_of_issued_token_does_not_contain_the_token() -> None:
    text = repr(issued_token(client_id="user-1"))
    assert VECTOR_JWT not in text
    for segment in VECTOR_JWT.split("."):
        assert segment not in text
    assert "user-1" in text


def test_issued_details_are_the_jwt_times_in_milliseconds() -> None:
    issuer = Issuer(
        keys=(KEY,),
        policy=load_policy(None),
        key_capability=None,
        token_ttl=600,
        token_max_ttl=3600,
        clock=lambda: _now() + 0.75,  # a fractional clock: iat is whole seconds, details are iat * 1000
    )
    issued = issuer.jwt(Identity(subject="alice", client_id="alice", role="user"), TokenParams())
    claims = decode(issued.token)
    details = issued.details()
    assert details["issued"] == claims["iat"] * 1000
    assert details["expires"] == claims["exp"] * 1000
    assert details["expires"] - details["issued"] == 600_000
    assert details["capability"] == claims["x-ably-capability"]
    assert details["clientId"] == claims["x-ably-clientId"] == "alice"


@pytest.mark.parametrize("client_id", ["alice", "üñí", 'quote"back\\slash', None])
def test_details_json_is_exactly_the_details_serialised(client_id: str | None) -> None:
    issued = IssuedToken("a.b.c", "appId.keyId", 1000, 2000, '{"chat:*":["publish"]}', client_id)
    assert json.loads(issued.details_json()) == issued.details()


@pytest.mark.parametrize("claim", ["iat", "exp", "x-ably-capability", "x-ably-clientId"])
def test_extra_claims_may_not_replace_the_ably_claims(claim: str) -> None:
    with pytest.raises(ValueError, match=claim):
        sign_jwt(KEY, capability="{}", client_id=None, issued_at=1, expires_at=2, extra_claims={claim: "x"})


def _payload_text(token: str) -> str:
    segment = token.split(".")[1]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode("ascii")


@pytest.mark.parametrize(
    "value",
    ["group-7", "üñí\u2028", 'quote"back\\slash', 3, -7, 10**20, 0.1, 2.0, 1e300, float("inf"), True, None, [1, "x"]],
)
def test_extra_claims_are_written_exactly_as_the_json_encoder_writes_the_claims(value: Any) -> None:
    extra = {"x-ably-revocation-key": "s:abc", "ably.limits.publish.perChannel.maxRate": value}
    token = sign_jwt(KEY, capability=ALL, client_id="üser", issued_at=1, expires_at=2, extra_claims=extra)
    claims = {"iat": 1, "exp": 2, "x-ably-capability": ALL, "x-ably-clientId": "üser", **extra}
    assert _payload_text(token) == json.dumps(claims, separators=(",", ":"))
