"""The admin API with tokens of a real provider (oidc-provider): a backend's client-credentials token
whose role claim carries AUTHSERVER_ADMIN_ROLE may do everything an admin API key may; any other
token of the provider is refused (403), and a token that does not verify is a 401."""

from __future__ import annotations

import logging
import time

import pytest

from .conftest import ADMIN_CLIENT_ID, ClientFactory, Provider
from admin_api import PREFIX, AdminClient, every_operation

pytestmark = pytest.mark.node

ADMIN_ENV = {"OIDC_ROLE_CLAIM": "roles", "AUTHSERVER_ADMIN_ROLE": "authserver-admin"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_operation_works_with_a_client_credentials_token_carrying_the_admin_role(
    shared_provider: Provider, make_client: ClientFactory
) -> None:
    client = make_client(shared_provider, **ADMIN_ENV)  # no admin key: the admin role switches the API on
    admin = AdminClient(client, bearer(shared_provider.client_credentials_token(admin=True)))
    every_operation(admin, revocation=False)


def test_the_provider_caller_is_audited_by_its_subject(
    shared_provider: Provider, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(shared_provider, **ADMIN_ENV)
    token = shared_provider.client_credentials_token(admin=True)
    with caplog.at_level(logging.INFO, logger="authserver.audit"):
        assert client.get(f"{PREFIX}/users", headers=bearer(token)).status_code == 200
    line = f"admin call: listUsers target=None by provider {shared_provider.issuer}#{ADMIN_CLIENT_ID}: status 200"
    assert line in [r.getMessage() for r in caplog.records if r.name == "authserver.audit"]
    assert token not in caplog.text


def test_a_token_of_the_provider_without_the_admin_role_is_403(
    shared_provider: Provider, make_client: ClientFactory
) -> None:
    client = make_client(shared_provider, **ADMIN_ENV)
    response = client.get(f"{PREFIX}/users", headers=bearer(shared_provider.client_credentials_token()))
    assert response.status_code == 403 and response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "the token's role claim does not carry the admin role 'authserver-admin'"
    assert response.json()["code"] == 40300


def test_without_an_admin_role_set_no_provider_token_is_an_admin(
    shared_provider: Provider, make_client: ClientFactory
) -> None:
    client = make_client(shared_provider, OIDC_ROLE_CLAIM="roles")
    token = shared_provider.client_credentials_token(admin=True)
    assert client.get(f"{PREFIX}/users", headers=bearer(token)).status_code == 404  # off: no key, no role
    keys = client.app.state.services.admin_keys  # type: ignore[attr-defined]
    client.portal.call(lambda: keys.create("backend", now=time.time()))  # type: ignore[union-attr]
    response = client.get(f"{PREFIX}/users", headers=bearer(token))
    assert response.status_code == 403
    assert "AUTHSERVER_ADMIN_ROLE is unset" in response.json()["detail"]


def test_a_token_that_does_not_verify_is_401_whatever_roles_it_claims(
    shared_provider: Provider, make_client: ClientFactory
) -> None:
    client = make_client(shared_provider, **ADMIN_ENV)
    roles = {"roles": ["authserver-admin"], "sub": "mallory"}
    for token in (
        shared_provider.sign(roles, now=time.time() - 3600),  # expired
        shared_provider.sign(roles, aud="https://another.example"),
        shared_provider.hs256_with_public_key(),
        shared_provider.sign(roles) + "x",
    ):
        response = client.get(f"{PREFIX}/users", headers=bearer(token))
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == 'Bearer realm="authserver-admin"'


def test_any_verified_token_of_the_issuer_carrying_the_role_is_an_admin(
    shared_provider: Provider, make_client: ClientFactory
) -> None:
    client = make_client(shared_provider, **ADMIN_ENV)
    token = shared_provider.sign({"roles": "authserver-admin", "sub": "support-lead"})  # a single string counts too
    assert client.get(f"{PREFIX}/users", headers=bearer(token)).json() == {"users": []}
