"""The provider login's redirect (``GET /login/oidc``) against the real provider, without a browser:
the redirect_uri it sends is the configured public URL's, never one built from the request's Host.
The whole flow in a browser is tests/oidc/test_page_login.py."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from .conftest import PAGE_CLIENT_ID, PAGE_CLIENT_SECRET, ClientFactory, Provider

pytestmark = pytest.mark.node
PUBLIC_URL = "https://chat.example.com"


@pytest.mark.parametrize("host", ["evil.example", "testserver", "chat.example.com:8443"])
def test_the_redirect_uri_comes_from_the_public_url_whatever_the_host(
    shared_provider: Provider, make_client: ClientFactory, host: str
) -> None:
    client = make_client(
        shared_provider,
        OIDC_CLIENT_ID=PAGE_CLIENT_ID,
        OIDC_CLIENT_SECRET=PAGE_CLIENT_SECRET,
        AUTHSERVER_PUBLIC_URL=PUBLIC_URL + "/",
    )
    response = client.get("/login/oidc", headers={"host": host}, follow_redirects=False)
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == shared_provider.issuer
    query = parse_qs(location.query)
    assert query["redirect_uri"] == [f"{PUBLIC_URL}/login/oidc/callback"]
    assert query["code_challenge_method"] == ["S256"] and query["state"] and query["nonce"]


@pytest.mark.parametrize(
    ("public_url", "cookie_secure", "secure"),
    [
        ("https://chat.example.com", "auto", True),  # browsers reach it over HTTPS
        ("http://127.0.0.1:8000", "auto", False),
        ("http://127.0.0.1:8000", "true", True),
        ("https://chat.example.com", "false", False),
    ],
)
def test_the_flow_cookie_is_secure_where_browsers_reach_the_service_over_https(
    shared_provider: Provider, make_client: ClientFactory, public_url: str, cookie_secure: str, secure: bool
) -> None:
    """The code flow's marker cookie is set before any HTTPS request could be seen behind a proxy, so with
    AUTHSERVER_COOKIE_SECURE=auto it follows the public URL's scheme (the address browsers use)."""
    client = make_client(
        shared_provider,
        OIDC_CLIENT_ID=PAGE_CLIENT_ID,
        OIDC_CLIENT_SECRET=PAGE_CLIENT_SECRET,
        AUTHSERVER_PUBLIC_URL=public_url,
        AUTHSERVER_COOKIE_SECURE=cookie_secure,
    )
    response = client.get("/login/oidc", follow_redirects=False)
    assert response.status_code == 302
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("authserver_oidc_flow=") and "samesite=lax" in cookie.lower()
    assert ("; secure" in cookie.lower()) is secure


def test_an_address_may_start_only_so_many_provider_logins(
    shared_provider: Provider, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Each start keeps a flow's state for 10 minutes: a flood of starts from one address is refused
    (back to the page, saying why) before anything is stored, and said once in the log."""
    client = make_client(
        shared_provider,
        OIDC_CLIENT_ID=PAGE_CLIENT_ID,
        OIDC_CLIENT_SECRET=PAGE_CLIENT_SECRET,
        AUTHSERVER_PUBLIC_URL=PUBLIC_URL,
        AUTHSERVER_PROVIDER_LOGIN_RATE="3/minute",
    )
    for _ in range(3):
        assert client.get("/login/oidc", follow_redirects=False).status_code == 302
    for _ in range(2):
        refused = client.get("/login/oidc", follow_redirects=False)
        assert refused.status_code == 303 and "set-cookie" not in refused.headers
        assert parse_qs(urlsplit(refused.headers["location"]).query)["login_error"] == [
            "too many logins started from this address; try again in a minute"
        ]
    said = [r.getMessage() for r in caplog.records if "AUTHSERVER_PROVIDER_LOGIN_RATE" in r.getMessage()]
    assert len(said) == 1
