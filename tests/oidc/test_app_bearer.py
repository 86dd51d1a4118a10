"""An app's own ``Authorization: Bearer`` (sent through ably-js ``authHeaders`` for its own API) does
not break a logged-in user: a bearer that is not a JWT of a trusted issuer is ignored when the
request carries a session cookie, and the session decides. A token that claims a trusted issuer and
fails verification is still refused (401), session or not: it is an attempt at an identity."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from .conftest import ClientFactory, Provider
from conftest import Blocking, ServiceFactory
from helpers import KEY_SECRET

APP_TOKENS = {
    "opaque": "app-api-token-5f2a9c",
    "jwt of another issuer": jwt.encode({"iss": "https://api.example.com", "sub": "u1"}, "k" * 32, algorithm="HS256"),
    "empty": "",
}


def logged_in(client: TestClient, name: str = "alice") -> None:
    users = Blocking(client.app.state.services.users, client)  # type: ignore[attr-defined]
    users.add(name, "correct horse", role=None, client_id=None, now=0.0)
    assert client.post("/login", json={"username": name, "password": "correct horse"}).status_code == 200


def client_id(response: Any) -> str:
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    # the service may run on a fake clock: the signature and the clientId are what matter here
    claims: dict[str, Any] = jwt.decode(
        token, KEY_SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False}
    )
    return str(claims["x-ably-clientId"])


@pytest.mark.parametrize("token", APP_TOKENS.values(), ids=APP_TOKENS.keys())
def test_without_a_provider_an_apps_bearer_beside_a_session_is_ignored(
    make_service: ServiceFactory, token: str
) -> None:
    service = make_service()
    logged_in(service.client)
    assert client_id(service.client.get("/auth", headers={"Authorization": f"Bearer {token}"})) == "alice"


def test_without_a_provider_or_a_session_a_bearer_is_still_refused_saying_why(make_service: ServiceFactory) -> None:
    service = make_service()
    refused = service.client.get("/auth", headers={"Authorization": "Bearer app-api-token"})
    assert refused.status_code == 401
    assert "no identity provider is configured" in refused.json()["error"]["message"]


@pytest.mark.node
@pytest.mark.parametrize("token", APP_TOKENS.values(), ids=APP_TOKENS.keys())
def test_with_a_provider_a_bearer_not_of_a_trusted_issuer_beside_a_session_is_ignored(
    shared_provider: Provider, make_client: ClientFactory, token: str
) -> None:
    client = make_client(shared_provider)
    logged_in(client)
    assert client_id(client.get("/auth", headers={"Authorization": f"Bearer {token}"})) == "alice"


@pytest.mark.node
def test_a_trusted_issuers_token_that_fails_verification_is_refused_even_beside_a_session(
    shared_provider: Provider, make_client: ClientFactory
) -> None:
    client = make_client(shared_provider)
    logged_in(client)
    expired = shared_provider.sign(sub="mallory", lifetime=-600)
    refused = client.get("/auth", headers={"Authorization": f"Bearer {expired}"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == 40101
    # and a valid one of that issuer decides over the session, as before
    valid = client.get("/auth", headers={"Authorization": f"Bearer {shared_provider.sign(sub='bob')}"})
    assert client_id(valid) == "bob"
    assert json.loads(client.get("/session").text)  # the session itself is untouched
