"""POST /token: OAuth 2.0 Token Exchange (RFC 8693) for backends, errors in RFC 6749 (5.2) shape."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from .conftest import ClientFactory, Provider
from helpers import KEY_SECRET

pytestmark = pytest.mark.node

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


@pytest.fixture
def client(shared_provider: Provider, make_client: ClientFactory) -> TestClient:
    return make_client(shared_provider)


def exchange(client: TestClient, token: str, **fields: str | None) -> Any:
    form = {"grant_type": GRANT, "subject_token": token, "subject_token_type": JWT_TYPE, **fields}
    return client.post("/token", data={k: v for k, v in form.items() if v is not None})


@pytest.mark.parametrize(
    "token_type",
    [JWT_TYPE, "urn:ietf:params:oauth:token-type:access_token", "urn:ietf:params:oauth:token-type:id_token"],
)
def test_a_provider_issued_access_token_is_exchanged_for_an_ably_jwt(
    shared_provider: Provider, client: TestClient, token_type: str
) -> None:
    response = exchange(client, shared_provider.client_credentials_token(), subject_token_type=token_type)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["issued_token_type"] == JWT_TYPE and body["token_type"] == "Bearer"
    claims = jwt.decode(body["access_token"], KEY_SECRET, algorithms=["HS256"])
    assert claims["x-ably-clientId"] == "backend-worker"
    assert body["expires_in"] == claims["exp"] - claims["iat"]
    # ...and the Ably TokenDetails fields, so that Ably clients can use the answer as it is
    assert body["token"] == body["access_token"] and body["clientId"] == "backend-worker"
    assert body["expires"] == claims["exp"] * 1000 and body["issued"] == claims["iat"] * 1000
    assert json.loads(body["capability"]) == json.loads(claims["x-ably-capability"])
    assert "no-store" in response.headers["cache-control"]


def test_capability_and_ttl_narrow_the_token_as_on_auth(shared_provider: Provider, client: TestClient) -> None:
    wanted = json.dumps({"chat:lobby": ["subscribe"], "admin:*": ["*"]})
    response = exchange(client, shared_provider.sign(sub="dave"), capability=wanted, ttl="120000")
    body = response.json()
    assert json.loads(body["capability"]) == {"chat:lobby": ["subscribe"]}  # ∩ the role's capability
    assert body["expires_in"] == 120


def test_scope_is_taken_as_capability_json(shared_provider: Provider, client: TestClient) -> None:
    response = exchange(client, shared_provider.sign(sub="dave"), scope=json.dumps({"chat:a": ["publish"]}))
    assert json.loads(response.json()["capability"]) == {"chat:a": ["publish"]}


def oauth_error(response: Any) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"error", "error_description"}, body
    assert "no-store" in response.headers["cache-control"]
    return response.status_code, body["error"], body["error_description"]


def test_a_missing_grant_type_is_invalid_request(client: TestClient) -> None:
    assert oauth_error(client.post("/token", data={"subject_token": "x"}))[:2] == (400, "invalid_request")


def test_another_grant_type_is_unsupported_grant_type(client: TestClient) -> None:
    response = client.post("/token", data={"grant_type": "client_credentials"})
    assert oauth_error(response)[:2] == (400, "unsupported_grant_type")


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"subject_token": None}, "subject_token is required"),
        ({"subject_token_type": None}, "subject_token_type is required"),
        ({"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"}, "not supported"),
        ({"ttl": "soon"}, "ttl"),
        ({"scope": "{}", "capability": "{}"}, "either scope or capability"),
    ],
)
def test_malformed_requests_are_invalid_request(
    shared_provider: Provider, client: TestClient, fields: dict[str, str | None], says: str
) -> None:
    status, error, description = oauth_error(exchange(client, shared_provider.sign(), **fields))
    assert (status, error) == (400, "invalid_request") and says in description


def test_a_json_body_is_invalid_request(shared_provider: Provider, client: TestClient) -> None:
    response = client.post("/token", json={"grant_type": GRANT, "subject_token": shared_provider.sign()})
    assert oauth_error(response)[:2] == (400, "invalid_request")


def test_a_repeated_parameter_is_invalid_request(shared_provider: Provider, client: TestClient) -> None:
    token = shared_provider.sign()
    body = f"grant_type={GRANT}&subject_token={token}&subject_token={token}&subject_token_type={JWT_TYPE}"
    response = client.post("/token", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert oauth_error(response)[:2] == (400, "invalid_request")


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: "not-a-jwt", "malformed"),
        (lambda p: p.sign(aud="https://other.example"), "audience"),
        (lambda p: p.hs256_with_public_key(), "algorithm"),
        (lambda p: p.sign(sub="a:b"), "clientId"),
    ],
)
def test_a_subject_token_that_cannot_be_exchanged_is_invalid_grant(
    shared_provider: Provider, client: TestClient, make: Any, says: str
) -> None:
    token = make(shared_provider)
    response = exchange(client, token)
    status, error, description = oauth_error(response)
    assert (status, error) == (400, "invalid_grant") and says in description
    assert token not in response.text


@pytest.mark.parametrize("capability", ['{"admin:*":["*"]}', '{"chat:*":["fly"]}'])
def test_a_capability_the_caller_may_not_have_or_that_does_not_parse_is_invalid_scope(
    shared_provider: Provider, client: TestClient, capability: str
) -> None:
    response = exchange(client, shared_provider.sign(), capability=capability)
    assert oauth_error(response)[:2] == (400, "invalid_scope")


def test_without_a_provider_every_subject_token_is_invalid_grant(make_settings: Any) -> None:
    from authserver.http.app import create_app

    with TestClient(create_app(make_settings())) as client:
        status, error, _ = oauth_error(exchange(client, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"))
    assert (status, error) == (400, "invalid_grant")
