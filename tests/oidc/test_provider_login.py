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
