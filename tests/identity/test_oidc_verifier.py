"""Checking one upstream JWT (identity/oidc/verifier.py) with keys made in the test and the time passed
in: what peek reads unverified, which key fits which algorithm, every claim check and its message.
The same refusals through /auth against a real provider are in tests/oidc/test_bearer.py."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from authserver.core.issuers import UpstreamIssuer, make_issuer
from authserver.errors import NotAuthenticatedError
from authserver.identity.oidc.verifier import (
    MAX_TOKEN_CHARS,
    BearerRefused,
    Unverified,
    check_key,
    check_times,
    peek,
    verify,
)

ISSUER = "https://idp.example.com"
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, **fields: str) -> jwt.PyJWK:
    """The provider's published key, as PyJWT builds it from the JWKS (``fields``: kid, alg...)."""
    if isinstance(private, ec.EllipticCurvePrivateKey):
        data = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        data = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return jwt.PyJWK({**data, **fields})


@pytest.fixture
def upstream() -> UpstreamIssuer:
    return make_issuer(issuer=ISSUER, audience=["chat", "api"], leeway=30)


def claims(**overrides: Any) -> dict[str, Any]:
    """A provider's claims issued at NOW for five minutes; an override of None leaves the claim out."""
    base: dict[str, Any] = {"iss": ISSUER, "aud": "chat", "sub": "alice", "iat": NOW, "exp": NOW + 300}
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def sign(key: Any, algorithm: str = "ES256", kid: str | None = "k1", **overrides: Any) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims(**overrides), key, algorithm=algorithm, headers=headers)


def b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def refused(check: str) -> Any:
    return pytest.raises(BearerRefused, match=check)


# --- peek: what the token says about itself ------------------------------------------------------


def test_peek_reads_the_algorithm_kid_and_issuer_without_verifying(ec_key: ec.EllipticCurvePrivateKey) -> None:
    assert peek(sign(ec_key)) == Unverified("ES256", "k1", ISSUER)
    assert peek(sign(ec_key, kid=None)).kid is None


def test_a_refusal_is_a_401_that_ably_clients_retry(ec_key: ec.EllipticCurvePrivateKey) -> None:
    with refused("bearer token refused: no iss claim") as caught:
        peek(sign(ec_key, iss=None))
    assert isinstance(caught.value, NotAuthenticatedError)
    assert (caught.value.code, caught.value.status) == (40101, 401)


def test_a_token_over_the_size_limit_is_refused_before_it_is_parsed() -> None:
    with refused(f"longer than {MAX_TOKEN_CHARS} characters"):
        peek("a" * (MAX_TOKEN_CHARS + 1))


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "e30.e30", "{header}.bm90IGpzb24.c2ln"])
def test_what_is_not_a_signed_jwt_is_refused_as_malformed(token: str) -> None:
    with refused("malformed"):
        peek(token.format(header=b64({"alg": "ES256"})))  # a good header on a payload that is not JSON


@pytest.mark.parametrize(
    ("header", "shown"),
    [
        ({"alg": "none"}, '"none"'),
        ({"alg": "HS256"}, '"HS256"'),  # a provider's public key must never serve as an HMAC secret
        ({"typ": "JWT"}, "missing"),
        ({"alg": 256}, "missing"),
    ],
)
def test_an_algorithm_no_issuer_may_allow_is_refused(header: dict[str, Any], shown: str) -> None:
    token = f"{b64(header)}.{b64(claims())}.c2ln"
    with refused(f"algorithm {shown} is not allowed"):
        peek(token)


def test_a_kid_that_is_not_a_string_is_refused() -> None:
    # PyJWT itself refuses such a header, so this reads as malformed before peek's own kid check.
    with refused("malformed|kid is not a string"):
        peek(f"{b64({'alg': 'ES256', 'kid': 7})}.{b64(claims())}.c2ln")


@pytest.mark.parametrize("iss", [None, "", 42])
def test_a_token_without_a_string_issuer_is_refused(ec_key: ec.EllipticCurvePrivateKey, iss: Any) -> None:
    token = f"{b64({'alg': 'ES256'})}.{b64({**claims(), 'iss': iss})}.c2ln"
    with refused("no iss claim"):
        peek(token)


# --- check_key: the key must fit the algorithm ----------------------------------------------------


def test_a_key_of_the_algorithms_type_and_curve_is_accepted(
    ec_key: ec.EllipticCurvePrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    check_key(public_jwk(ec_key), "ES256")
    check_key(public_jwk(rsa_key), "RS256")
    check_key(public_jwk(rsa_key), "PS256")  # an RSA key declaring no algorithm serves both


@pytest.mark.parametrize(("algorithm", "kty"), [("RS256", "EC"), ("ES384", "EC"), ("EdDSA", "EC")])
def test_a_key_of_another_type_or_curve_is_refused(
    ec_key: ec.EllipticCurvePrivateKey, algorithm: str, kty: str
) -> None:
    with refused(f"algorithm {algorithm} does not match the key's type \\({kty}\\)"):
        check_key(public_jwk(ec_key), algorithm)


def test_a_key_declared_for_one_algorithm_serves_no_other(rsa_key: rsa.RSAPrivateKey) -> None:
    key = public_jwk(rsa_key, alg="RS256")
    check_key(key, "RS256")
    with refused("algorithm PS256 is not the one the key is for \\(RS256\\)"):
        check_key(key, "PS256")


# --- verify: signature and claims -----------------------------------------------------------------


@pytest.mark.parametrize("aud", ["chat", "api", ["other", "api"]])
def test_a_good_token_naming_any_accepted_audience_gives_its_claims(
    ec_key: ec.EllipticCurvePrivateKey, upstream: UpstreamIssuer, aud: str | list[str]
) -> None:
    found = verify(sign(ec_key, aud=aud, email="a@example.com"), upstream, public_jwk(ec_key), "ES256", NOW)
    assert found == claims(aud=aud, email="a@example.com")


def test_an_algorithm_this_issuer_does_not_allow_is_refused(ec_key: ec.EllipticCurvePrivateKey) -> None:
    rsa_only = make_issuer(issuer=ISSUER, audience="chat", algorithms=["RS256"])
    with refused(f"algorithm ES256 is not allowed for {ISSUER}"):
        verify(sign(ec_key), rsa_only, public_jwk(ec_key), "ES256", NOW)


def test_a_token_signed_by_another_key_does_not_verify(
    ec_key: ec.EllipticCurvePrivateKey, upstream: UpstreamIssuer
) -> None:
    mallory = ec.generate_private_key(ec.SECP256R1())
    with refused("signature does not verify"):
        verify(sign(mallory), upstream, public_jwk(ec_key), "ES256", NOW)


def test_a_header_naming_another_algorithm_than_the_signature_is_refused(
    rsa_key: rsa.RSAPrivateKey, upstream: UpstreamIssuer
) -> None:
    token = sign(rsa_key, algorithm="RS256")
    header, payload, signature = token.split(".")
    relabelled = f"{b64({'alg': 'PS256', 'kid': 'k1', 'typ': 'JWT'})}.{payload}.{signature}"
    with refused("signature does not verify"):
        verify(relabelled, upstream, public_jwk(rsa_key), "PS256", NOW)


@pytest.mark.parametrize(
    ("overrides", "check"),
    [
        ({"aud": "other-api"}, "audience is not chat or api"),
        ({"iss": "https://evil.example"}, f"issuer is not {ISSUER}"),
        ({"aud": None}, "no aud claim"),
        ({"exp": None}, "no exp claim"),
        ({"exp": NOW - 31}, "expired"),
        ({"nbf": NOW + 31}, "not valid yet"),
        ({"iat": NOW + 31}, "issued in the future"),
        ({"iat": "now"}, "iat is not a number"),
    ],
)
def test_each_failed_claim_check_is_named_and_the_token_is_never_echoed(
    ec_key: ec.EllipticCurvePrivateKey, upstream: UpstreamIssuer, overrides: dict[str, Any], check: str
) -> None:
    token = sign(ec_key, **overrides)
    with refused(check) as caught:
        verify(token, upstream, public_jwk(ec_key), "ES256", NOW)
    for part in token.split("."):
        assert part not in caught.value.message


# --- check_times: exp, nbf and iat against the time passed in ------------------------------------


@pytest.mark.parametrize(
    ("found", "now", "leeway"),
    [
        ({"exp": 1000}, 1029.999, 30),  # within the leeway after exp
        ({"exp": 1000}, 999.999, 0),
        ({"exp": 1000.5}, 1000.0, 0),  # NumericDate may have a fraction
        ({"exp": 2000, "nbf": 1030}, 1000, 30),  # nbf reached, with the leeway
        ({"exp": 2000, "iat": 1030}, 1000, 30),
    ],
)
def test_times_within_the_leeway_pass(found: dict[str, Any], now: float, leeway: float) -> None:
    check_times(found, now, leeway)


@pytest.mark.parametrize(
    ("found", "now", "leeway", "check"),
    [
        ({"exp": 1000}, 1030, 30, "expired"),  # at exp + leeway it is over
        ({"exp": 1000}, 1000, 0, "expired"),
        ({"exp": 2000, "nbf": 1031}, 1000, 30, "not valid yet \\(nbf\\)"),
        ({"exp": 2000, "iat": 1031}, 1000, 30, "issued in the future \\(iat\\)"),
        ({}, 1000, 30, "no exp claim"),
        ({"exp": True}, 1000, 30, "exp is not a number"),
        ({"exp": "2000"}, 1000, 30, "exp is not a number"),
        ({"exp": 2000, "nbf": [1]}, 1000, 30, "nbf is not a number"),
    ],
)
def test_times_outside_the_leeway_or_not_numbers_are_refused(
    found: dict[str, Any], now: float, leeway: float, check: str
) -> None:
    with refused(check):
        check_times(found, now, leeway)
