"""``Authorization: Bearer <upstream JWT>`` on /auth, against a real oidc-provider: what is accepted,
and every hostile token refused with 401/40101 naming the failed check (403 when a valid token can
never become an Ably identity)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from .conftest import AUDIENCE, ClientFactory, Provider, unique
from helpers import KEY_SECRET

pytestmark = pytest.mark.node


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ably_claims(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    claims: dict[str, Any] = jwt.decode(response.json()["token"], KEY_SECRET, algorithms=["HS256"])
    return claims


@pytest.fixture
def client(shared_provider: Provider, make_client: ClientFactory) -> TestClient:
    return make_client(shared_provider)


@pytest.mark.parametrize("kty", ["RSA", "EC", "OKP"])
def test_a_token_signed_with_each_key_type_of_the_provider_gets_an_ably_token(
    shared_provider: Provider, client: TestClient, kty: str
) -> None:
    response = client.get("/auth", headers=bearer(shared_provider.sign(kty=kty, sub="alice")))
    claims = ably_claims(response)
    assert claims["x-ably-clientId"] == "alice"
    assert "private:alice" in json.loads(claims["x-ably-capability"])


def test_a_token_the_provider_issued_itself_gets_an_ably_token(shared_provider: Provider, client: TestClient) -> None:
    """An access token from the provider's own token endpoint (client credentials): sub is the client."""
    response = client.get("/auth", headers=bearer(shared_provider.client_credentials_token()))
    assert ably_claims(response)["x-ably-clientId"] == "backend-worker"


@pytest.mark.parametrize(
    ("method", "extra", "accept", "kind"),
    [
        ("GET", {}, "", "details"),
        ("POST", {}, "", "details"),
        ("GET", {"format": "jwt"}, "", "jwt"),
        ("POST", {}, "application/jwt", "jwt"),
        ("GET", {"format": "tokenrequest"}, "", "tokenrequest"),
    ],
)
def test_every_method_and_response_format_takes_the_bearer(
    shared_provider: Provider, client: TestClient, method: str, extra: dict[str, str], accept: str, kind: str
) -> None:
    headers = {**bearer(shared_provider.sign(sub="carol")), **({"Accept": accept} if accept else {})}
    if method == "GET":
        response = client.get("/auth", params=extra, headers=headers)
    else:
        response = client.post("/auth", data=extra, headers=headers)
    assert response.status_code == 200, response.text
    if kind == "jwt":
        assert jwt.decode(response.text, KEY_SECRET, algorithms=["HS256"])["x-ably-clientId"] == "carol"
    elif kind == "tokenrequest":
        assert response.json()["clientId"] == "carol" and "mac" in response.json()
    else:
        assert response.json()["clientId"] == "carol"


def test_the_client_id_never_comes_from_a_token_param(shared_provider: Provider, client: TestClient) -> None:
    response = client.get("/auth", params={"clientId": "bob"}, headers=bearer(shared_provider.sign(sub="alice")))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == 40102


Hostile = Callable[[Provider], str]


def _tampered(provider: Provider) -> str:
    header, payload, signature = provider.sign().split(".")
    forged = json.loads(jwt.utils.base64url_decode(payload))
    forged["sub"] = "admin"
    return ".".join([header, jwt.utils.base64url_encode(json.dumps(forged).encode()).decode(), signature])


def _own_key_with_provider_kid(provider: Provider) -> str:
    now = int(time.time())
    claims = {"iss": provider.issuer, "aud": AUDIENCE, "sub": "mallory", "iat": now, "exp": now + 300}
    key = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": provider.key("EC")["kid"]})


def _alg_none(provider: Provider) -> str:
    now = int(time.time())
    claims = {"iss": provider.issuer, "aud": AUDIENCE, "sub": "mallory", "iat": now, "exp": now + 300}
    return jwt.encode(claims, "", algorithm="none", headers={"kid": provider.key("RSA")["kid"]})


def _rs256_header_on_ec_key(provider: Provider) -> str:
    # Sign with the RSA key but name the EC key: the EC key's type does not fit RS256.
    return provider.sign(kty="RSA", kid=provider.key("EC")["kid"])


#: (case, token maker, the check the message names)
HOSTILE: list[tuple[str, Hostile, str]] = [
    ("malformed", lambda p: "not-a-jwt", "malformed"),
    ("three-garbage-parts", lambda p: "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln", "malformed"),
    ("expired", lambda p: p.sign(now=time.time() - 3600, lifetime=600), "expired"),
    ("not-yet-valid", lambda p: p.sign(nbf=int(time.time()) + 600, lifetime=1200), "not valid yet"),
    ("issued-in-the-future", lambda p: p.sign(now=time.time() + 600), "issued in the future"),
    ("wrong-audience", lambda p: p.sign(aud="https://other-api.example"), "audience"),
    ("wrong-issuer", lambda p: p.sign(iss="https://evil.example"), "issuer is not trusted"),
    ("no-issuer", lambda p: p.sign(iss=None), "no iss claim"),
    ("no-expiry", lambda p: p.sign(exp=None), "no exp claim"),
    ("expiry-not-a-number", lambda p: p.sign(exp="tomorrow"), "exp"),
    ("iat-not-a-number", lambda p: p.sign(iat="now"), "iat"),
    # JSON as Python reads it takes NaN and Infinity: a NaN compares false with everything, so it passed
    ("expiry-nan", lambda p: p.sign(exp=float("nan")), "exp is not a finite number"),
    ("expiry-infinity", lambda p: p.sign(exp=float("inf")), "exp is not a finite number"),
    ("nbf-nan", lambda p: p.sign(nbf=float("nan")), "nbf is not a finite number"),
    ("iat-nan", lambda p: p.sign(iat=float("nan")), "iat is not a finite number"),
    ("iat-minus-infinity", lambda p: p.sign(iat=float("-inf")), "iat is not a finite number"),
    ("auth-time-nan", lambda p: p.sign(auth_time=float("nan")), "auth_time is not a finite number"),
    ("auth-time-not-a-number", lambda p: p.sign(auth_time="yesterday"), "auth_time"),
    ("unknown-kid", lambda p: p.sign(kid="no-such-key"), "unknown kid"),
    ("tampered-claims", _tampered, "signature does not verify"),
    ("signed-by-another-key", _own_key_with_provider_kid, "signature does not verify"),
    ("alg-none", _alg_none, "algorithm"),
    ("hs256-with-the-providers-public-key", lambda p: p.hs256_with_public_key(), "algorithm"),
    ("rs256-naming-an-ec-key", _rs256_header_on_ec_key, "does not match the key"),
    ("ps256-on-a-key-declared-rs256", lambda p: p.sign(kty="RSA", alg="PS256"), "not the one the key is for"),
]


@pytest.mark.parametrize(("case", "make", "check"), HOSTILE, ids=[row[0] for row in HOSTILE])
def test_a_hostile_bearer_token_gets_401_naming_the_check_and_never_echoes_it(
    shared_provider: Provider, client: TestClient, case: str, make: Hostile, check: str
) -> None:
    token = make(shared_provider)
    response = client.get("/auth", headers=bearer(token))
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == 40101 and error["statusCode"] == 401
    assert check in error["message"], error["message"]
    assert response.headers["x-ably-errorcode"] == "40101"
    assert response.headers["cache-control"] == "private, no-cache, no-store, must-revalidate"
    for part in token.split("."):
        if len(part) > 8:
            assert part not in response.text and part not in response.headers["x-ably-errormessage"]


def test_an_empty_bearer_gets_401(client: TestClient) -> None:
    response = client.get("/auth", headers={"Authorization": "Bearer "})
    assert response.status_code == 401 and "empty" in response.json()["error"]["message"]


@pytest.mark.parametrize(("sub", "why"), [("*", "wildcard"), ("tenant:alice", "safe set"), ("x" * 65, "longer")])
def test_a_valid_token_whose_client_id_is_outside_the_safe_set_gets_a_final_403(
    shared_provider: Provider, client: TestClient, sub: str, why: str
) -> None:
    response = client.get("/auth", headers=bearer(shared_provider.sign(sub=sub)))
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == 40300
    assert why in response.json()["error"]["message"]


def test_a_valid_token_without_the_client_id_claim_gets_403(
    shared_provider: Provider, make_client: ClientFactory
) -> None:
    client = make_client(shared_provider, OIDC_CLIENT_ID_CLAIM="email")
    response = client.get("/auth", headers=bearer(shared_provider.sign(sub="alice")))
    assert response.status_code == 403 and "'email'" in response.json()["error"]["message"]


def test_the_client_id_claim_is_configurable(shared_provider: Provider, make_client: ClientFactory) -> None:
    client = make_client(shared_provider, OIDC_CLIENT_ID_CLAIM="email")
    response = client.get("/auth", headers=bearer(shared_provider.sign(sub="auth0|123", email="alice@example.com")))
    assert ably_claims(response)["x-ably-clientId"] == "alice@example.com"


@pytest.mark.parametrize(
    ("roles", "capability_has"),
    [
        (["viewer", "admin"], "*"),  # the first value naming a policy role
        ("admin", "*"),  # a string
        (["viewer"], "private:alice"),  # none names a role: the default role
        (None, "private:alice"),  # no claim: the default role
    ],
)
def test_the_role_claim_picks_the_first_value_naming_a_policy_role(
    shared_provider: Provider, make_client: ClientFactory, roles: Any, capability_has: str
) -> None:
    client = make_client(shared_provider, OIDC_ROLE_CLAIM="https://chat.example/roles")
    token = shared_provider.sign(**{"sub": "alice", "https://chat.example/roles": roles})
    capability = json.loads(ably_claims(client.get("/auth", headers=bearer(token)))["x-ably-capability"])
    assert capability_has in capability


def test_a_nested_role_claim_as_keycloak_sends_it(shared_provider: Provider, make_client: ClientFactory) -> None:
    client = make_client(shared_provider, OIDC_ROLE_CLAIM="realm_access.roles")
    token = shared_provider.sign(sub="alice", realm_access={"roles": ["offline_access", "admin"]})
    capability = json.loads(ably_claims(client.get("/auth", headers=bearer(token)))["x-ably-capability"])
    assert capability == {"*": ["*"]}


def test_with_a_bearer_and_a_session_cookie_the_bearer_decides(
    shared_provider: Provider, make_client: ClientFactory
) -> None:
    client = make_client(shared_provider, AUTHSERVER_DEMO_LOGIN="true")
    assert client.post("/login", json={"username": "bob", "password": "x"}).status_code == 200
    assert client.get("/auth").json()["clientId"] == "bob"
    assert client.get("/auth", headers=bearer(shared_provider.sign(sub="alice"))).json()["clientId"] == "alice"
    refused = client.get("/auth", headers=bearer(shared_provider.sign(aud="https://other.example")))
    assert refused.status_code == 401  # a bad bearer is not rescued by the cookie


def test_without_a_configured_provider_a_bearer_gets_401(make_client: ClientFactory, make_settings: Any) -> None:
    from authserver.http.app import create_app

    with TestClient(create_app(make_settings())) as client:
        response = client.get("/auth", headers=bearer("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"))
    assert response.status_code == 401 and "no identity provider" in response.json()["error"]["message"]


def test_no_log_line_holds_a_token(
    shared_provider: Provider, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(shared_provider)
    tokens = [
        shared_provider.sign(sub=unique("u")),
        shared_provider.sign(aud="https://other.example"),
        shared_provider.sign(kid="unknown"),
        shared_provider.hs256_with_public_key(),
        shared_provider.sign(sub="bad:id"),
    ]
    for token in tokens:
        client.get("/auth", headers=bearer(token))
        client.post(
            "/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token": token,
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            },
        )
    assert caplog.records, "expected the service to log something"
    text = "\n".join(record.getMessage() for record in caplog.records)
    for token in tokens:
        for part in token.split("."):
            if len(part) > 8:
                assert part not in text


def test_a_valid_token_whose_role_allows_nothing_the_key_allows_gets_a_final_403(
    shared_provider: Provider, make_client: ClientFactory
) -> None:
    client = make_client(shared_provider, ABLY_KEY_CAPABILITY='{"billing:*":["subscribe"]}')
    response = client.get("/auth", headers=bearer(shared_provider.sign(sub="alice")))
    assert response.status_code == 403 and response.json()["error"]["code"] == 40160


def test_session_says_who_the_bearer_is(shared_provider: Provider, client: TestClient) -> None:
    body = client.get("/session", headers=bearer(shared_provider.sign(sub="frank"))).json()
    assert body["loggedIn"] and body["clientId"] == "frank"
    assert body["source"] == f"oidc:{shared_provider.issuer}"


def test_a_provider_user_may_never_act_as_a_registered_account(
    shared_provider: Provider, make_client: ClientFactory
) -> None:
    client = make_client(shared_provider)
    users = client.app.state.services.users  # type: ignore[attr-defined]
    client.portal.call(  # type: ignore[union-attr]
        lambda: users.add("grace", "correct horse", role=None, client_id="grace@example.com", now=time.time())
    )
    for sub in ("grace", "grace@example.com"):  # its username or its clientId
        response = client.get("/auth", headers=bearer(shared_provider.sign(sub=sub)))
        assert response.status_code == 403, response.text
        assert "registered account" in response.json()["error"]["message"]


def test_key_fetches_and_bearer_tokens_are_counted_in_the_metrics(
    shared_provider: Provider, make_client: ClientFactory
) -> None:
    client = make_client(shared_provider)  # a new service: its first bearer token makes it fetch the keys
    ably_claims(client.get("/auth", headers=bearer(shared_provider.sign(sub="dora"))))
    metrics = client.get("/metrics").text
    assert 'authserver_jwks_fetches_total{outcome="ok"} 1.0' in metrics
    source = "oidc:" + shared_provider.issuer.rstrip("/")
    assert f'authserver_tokens_issued_total{{format="details",source="{source}"}} 1.0' in metrics


CLAIMS_POLICY = """
default_role = "member"
[roles.member.capability]
"chat:*" = ["publish", "subscribe"]
[roles.member.channel_claims]
"chat:*" = '{"email":"{claim:email}","who":"{clientId}"}'
"chat:lobby" = "lobby"
[roles.member.publish_rate]
"chat:*" = 5
"""


@pytest.fixture
def claims_client(shared_provider: Provider, make_client: ClientFactory, tmp_path: Any) -> TestClient:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(CLAIMS_POLICY, encoding="utf-8")
    return make_client(shared_provider, AUTHSERVER_POLICY=str(policy_file))


def test_a_user_claim_quoting_the_upstream_email_carries_it_into_the_ably_jwt(
    shared_provider: Provider, claims_client: TestClient
) -> None:
    token = shared_provider.sign(sub="dana", email="dana@example.com")
    claims = ably_claims(claims_client.get("/auth", headers=bearer(token)))
    assert json.loads(claims["ably.channel.chat:*"]) == {"email": "dana@example.com", "who": "dana"}
    assert claims["ably.channel.chat:lobby"] == "lobby"
    assert claims["ably.limits.publish.perAttachment.maxRate.chat:*"] == 5


def test_without_the_upstream_claim_the_user_claim_quoting_it_is_left_out(
    shared_provider: Provider, claims_client: TestClient
) -> None:
    claims = ably_claims(claims_client.get("/auth", headers=bearer(shared_provider.sign(sub="erin"))))
    assert "ably.channel.chat:*" not in claims
    assert claims["ably.channel.chat:lobby"] == "lobby"


def test_a_role_with_claims_gets_a_final_403_for_a_token_request(
    shared_provider: Provider, claims_client: TestClient
) -> None:
    token = shared_provider.sign(sub="frank")
    response = claims_client.get("/auth", params={"format": "tokenrequest"}, headers=bearer(token))
    assert response.status_code == 403, response.text
    assert "only a JWT carries" in response.json()["error"]["message"]


def two_issuers_policy(tmp_path: Any, other: Provider, prefix: str = "b.") -> str:
    policy_file = tmp_path / "two-issuers.toml"
    policy_file.write_text(
        'default_role = "user"\n[roles.user.capability]\n"private:{clientId}" = ["*"]\n'
        f'[[issuers]]\nissuer = "{other.issuer}"\naudience = "{AUDIENCE}"\nclient_id_prefix = "{prefix}"\n',
        encoding="utf-8",
    )
    return str(policy_file)


def test_two_issuers_users_with_the_same_sub_get_different_client_ids_and_channels(
    shared_provider: Provider, own_provider: Provider, make_client: ClientFactory, tmp_path: Any
) -> None:
    """Issuer B's "alice" is not issuer A's "alice": B's prefix is in the clientId and in {clientId}."""
    client = make_client(shared_provider, AUTHSERVER_POLICY=two_issuers_policy(tmp_path, own_provider))
    of_a = ably_claims(client.get("/auth", headers=bearer(shared_provider.sign(sub="alice"))))
    of_b = ably_claims(client.get("/auth", headers=bearer(own_provider.sign(sub="alice"))))
    assert (of_a["x-ably-clientId"], of_b["x-ably-clientId"]) == ("alice", "b.alice")
    assert json.loads(of_a["x-ably-capability"]) == {"private:alice": ["*"]}
    assert json.loads(of_b["x-ably-capability"]) == {"private:b.alice": ["*"]}
    session = client.get("/session", headers=bearer(own_provider.sign(sub="alice")))
    assert session.json()["clientId"] == "b.alice"


def test_the_prefix_comes_before_the_safe_set_check(
    shared_provider: Provider, own_provider: Provider, make_client: ClientFactory, tmp_path: Any
) -> None:
    client = make_client(shared_provider, AUTHSERVER_POLICY=two_issuers_policy(tmp_path, own_provider))
    # "_bob" cannot start a clientId, "b._bob" can; 63 characters fit alone, not after the prefix.
    assert (
        ably_claims(client.get("/auth", headers=bearer(own_provider.sign(sub="_bob"))))["x-ably-clientId"] == "b._bob"
    )
    too_long = client.get("/auth", headers=bearer(own_provider.sign(sub="x" * 63)))
    assert too_long.status_code == 403 and "longer than 64" in too_long.json()["error"]["message"]


def test_the_unprefixed_issuers_user_cannot_take_a_client_id_under_anothers_prefix(
    shared_provider: Provider, own_provider: Provider, make_client: ClientFactory, tmp_path: Any
) -> None:
    """Issuer A's user named "b.alice" would be issuer B's "alice": refused, final."""
    client = make_client(shared_provider, AUTHSERVER_POLICY=two_issuers_policy(tmp_path, own_provider))
    response = client.get("/auth", headers=bearer(shared_provider.sign(sub="b.alice")))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == 40300
    assert "'b.'" in response.json()["error"]["message"]


def test_the_oidc_issuer_may_have_a_prefix_too(
    shared_provider: Provider, own_provider: Provider, make_client: ClientFactory, tmp_path: Any
) -> None:
    policy = two_issuers_policy(tmp_path, own_provider, prefix="")  # B unprefixed, A prefixed instead
    client = make_client(shared_provider, AUTHSERVER_POLICY=policy, OIDC_CLIENT_ID_PREFIX="a.")
    of_a = ably_claims(client.get("/auth", headers=bearer(shared_provider.sign(sub="alice"))))
    of_b = ably_claims(client.get("/auth", headers=bearer(own_provider.sign(sub="alice"))))
    assert (of_a["x-ably-clientId"], of_b["x-ably-clientId"]) == ("a.alice", "alice")
