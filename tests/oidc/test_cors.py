"""CORS for the trusted front-end origins (AUTHSERVER_ALLOWED_ORIGINS) on /auth, /token, /session,
/login and /logout, and nothing for any other origin; the CSRF check of /login uses the same list."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from .conftest import ClientFactory, Provider
from conftest import ServiceFactory

APP = "https://app.example.com"
OTHER = "https://evil.example"
PATHS = ["/auth", "/token", "/session", "/login", "/logout"]


@pytest.fixture
def client(make_service: ServiceFactory) -> TestClient:
    return make_service(AUTHSERVER_ALLOWED_ORIGINS=f"{APP},http://localhost:5173", AUTHSERVER_DEMO_LOGIN="true").client


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("headers", ["authorization", "content-type", "authorization, content-type"])
def test_a_preflight_from_a_trusted_origin_allows_credentials_and_the_auth_headers(
    client: TestClient, path: str, headers: str
) -> None:
    response = client.options(
        path,
        headers={"Origin": APP, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": headers},
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP
    assert response.headers["access-control-allow-credentials"] == "true"
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["vary"] == "Origin"


@pytest.mark.parametrize("path", PATHS)
def test_a_preflight_from_another_origin_gets_no_cors_headers(client: TestClient, path: str) -> None:
    response = client.options(path, headers={"Origin": OTHER, "Access-Control-Request-Method": "POST"})
    assert response.status_code != 204
    assert not any(name.startswith("access-control-") for name in response.headers)


def test_a_credentialed_request_from_a_trusted_origin_may_read_the_answer(client: TestClient) -> None:
    assert client.post("/login", json={"username": "bob", "password": "x"}, headers={"Origin": APP}).status_code == 200
    response = client.get("/auth", headers={"Origin": APP})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "Origin" in response.headers["vary"]
    error = client.get("/auth", params={"ttl": "x"}, headers={"Origin": APP})  # errors are readable too
    assert error.headers["access-control-allow-origin"] == APP
    assert "X-Ably-Errorcode" in error.headers["access-control-expose-headers"]


def test_a_request_from_another_origin_gets_no_cors_headers_and_cannot_log_in(client: TestClient) -> None:
    response = client.get("/session", headers={"Origin": OTHER})
    assert "access-control-allow-origin" not in response.headers
    assert response.headers["vary"] == "Origin"
    refused = client.post("/login", json={"username": "bob", "password": "x"}, headers={"Origin": OTHER})
    assert refused.status_code == 403


def test_other_paths_answer_no_cors_even_to_a_trusted_origin(client: TestClient) -> None:
    response = client.get("/healthz", headers={"Origin": APP})
    assert "access-control-allow-origin" not in response.headers


def test_without_trusted_origins_nobody_gets_cors(make_service: ServiceFactory) -> None:
    client = make_service().client
    response = client.options("/auth", headers={"Origin": APP, "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.node
def test_a_bearer_from_a_trusted_origin_gets_a_token_it_may_read(
    shared_provider: Provider, make_client: ClientFactory
) -> None:
    client = make_client(shared_provider, AUTHSERVER_ALLOWED_ORIGINS=APP)
    token = shared_provider.sign(sub="alice")
    response = client.post("/auth", headers={"Origin": APP, "Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.json()["clientId"] == "alice"
    assert response.headers["access-control-allow-origin"] == APP
