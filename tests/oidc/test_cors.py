"""CORS for the trusted front-end origins (AUTHSERVER_ALLOWED_ORIGINS) on /auth, /token, /session,
/login and /logout, and nothing for any other origin; the CSRF check of /login uses the same list."""

from __future__ import annotations

import logging

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
def test_a_preflight_from_another_origin_is_refused_saying_which_origin_and_which_setting(
    client: TestClient, path: str
) -> None:
    response = client.options(path, headers={"Origin": OTHER, "Access-Control-Request-Method": "POST"})
    assert response.status_code == 403
    assert not any(name.startswith("access-control-") for name in response.headers)
    assert response.headers["vary"] == "Origin"
    error = response.json()["error"]
    assert error["code"] == 40300
    assert error["message"] == (
        f"CORS refused: origin '{OTHER}' is not in AUTHSERVER_ALLOWED_ORIGINS; add it there to call {path}"
    )
    assert response.headers["x-ably-errorcode"] == "40300"


def test_a_refused_origin_is_logged_once_however_often_it_asks(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="authserver.http"):
        for path in [*PATHS, *PATHS]:
            client.options(path, headers={"Origin": OTHER, "Access-Control-Request-Method": "GET"})
        client.options("/auth", headers={"Origin": "https://other.example", "Access-Control-Request-Method": "GET"})
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("CORS refused")]
    assert len(lines) == 2
    assert OTHER in lines[0] and "AUTHSERVER_ALLOWED_ORIGINS" in lines[0] and "logged once per origin" in lines[0]
    assert "https://other.example" in lines[1]


def test_refused_origins_past_the_first_few_hundred_are_not_remembered_and_rarely_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="authserver.http"):
        for n in range(300):
            response = client.options(
                "/auth", headers={"Origin": f"https://o{n}.example", "Access-Control-Request-Method": "GET"}
            )
            assert response.status_code == 403  # every one still answered
    logged = [r for r in caplog.records if r.getMessage().startswith("CORS refused")]
    assert 256 <= len(logged) <= 256 + 3


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
    assert response.status_code == 403
    assert "(AUTHSERVER_ALLOWED_ORIGINS is empty); add it there" in response.json()["error"]["message"]


def test_an_options_request_that_is_not_a_preflight_is_left_to_the_app(client: TestClient) -> None:
    assert client.options("/auth", headers={"Origin": OTHER}).status_code == 405


@pytest.mark.node
def test_a_bearer_from_a_trusted_origin_gets_a_token_it_may_read(
    shared_provider: Provider, make_client: ClientFactory
) -> None:
    client = make_client(shared_provider, AUTHSERVER_ALLOWED_ORIGINS=APP)
    token = shared_provider.sign(sub="alice")
    response = client.post("/auth", headers={"Origin": APP, "Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.json()["clientId"] == "alice"
    assert response.headers["access-control-allow-origin"] == APP


# --- a cross-origin /auth whose cookie did not come along -----------------------------------------


def test_a_cross_origin_auth_without_its_cookie_says_no_cookie_arrived_and_where_to_read_why(
    client: TestClient,
) -> None:
    response = client.get("/auth", headers={"Origin": APP})
    assert response.status_code == 401  # still "log in and retry": the page may not have logged in yet
    message = response.json()["error"]["message"]
    assert message.startswith("not logged in: no session cookie arrived with this cross-origin request")
    assert "docs/troubleshooting.md" in message
    assert "'authorization' in lower case" in message
    assert "docs/troubleshooting.md" in response.headers["x-ably-errormessage"]  # what ably-js reports


@pytest.mark.parametrize("origin", [None, "http://testserver", "null"])
def test_a_same_origin_auth_without_a_cookie_is_plainly_not_logged_in(client: TestClient, origin: str | None) -> None:
    headers = {} if origin is None else {"Origin": origin}
    assert client.get("/auth", headers=headers).json()["error"]["message"] == "not logged in"


def test_a_cross_origin_auth_whose_cookie_arrived_but_is_not_valid_is_not_blamed_on_the_cookie(
    client: TestClient,
) -> None:
    client.cookies.set("authserver_session", "garbage")
    message = client.get("/auth", headers={"Origin": APP}).json()["error"]["message"]
    assert message == "session is not valid; log in again"
