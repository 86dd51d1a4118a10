"""``authserver check`` covers the identity provider settings; ``check --online`` fetches each provider's
discovery document and keys and says what it found."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from authserver.cli import EXIT_CONFIG, EXIT_OK, main

from .conftest import AUDIENCE, PAGE_CLIENT_ID, Provider
from helpers import API_KEY, SESSION_SECRET


@dataclass
class Result:
    code: int
    out: str
    err: str


class Check:
    def __init__(self, capsys: pytest.CaptureFixture[str], environ: dict[str, str]) -> None:
        self.capsys = capsys
        #: The environment of every check the test runs.
        self.environ = environ

    def __call__(self, *args: str, **env: str) -> Result:
        self.environ.update(env)
        self.capsys.readouterr()
        code = main(["check", *args], environ=self.environ)
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)


@pytest.fixture
def check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Check:
    monkeypatch.chdir(tmp_path)
    environ = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/users.db",
        "ABLY_API_KEY": API_KEY,
        "SESSION_SECRET": SESSION_SECRET,
    }
    return Check(capsys, environ)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OIDC_ISSUER": "http://idp.example.com"}, "OIDC_ISSUER: issuer must use https"),
        ({"OIDC_ISSUER": "https://idp.example.com"}, "OIDC_AUDIENCE: issuer https://idp.example.com: an audience"),
        ({"OIDC_AUDIENCE": "api"}, "OIDC_AUDIENCE: set OIDC_ISSUER too"),
        ({"OIDC_ISSUER": "https://i.example", "OIDC_AUDIENCE": "a", "OIDC_LEEWAY": "9999"}, "OIDC_LEEWAY"),
        ({"OIDC_ISSUER": "https://i.example", "OIDC_AUDIENCE": "a", "OIDC_CLIENT_SECRET": "s"}, "set OIDC_CLIENT_ID"),
        ({"OIDC_BACKCHANNEL_LOGOUT_AUDIENCE": "page"}, "OIDC_BACKCHANNEL_LOGOUT_AUDIENCE: set OIDC_ISSUER too"),
    ],
)
def test_check_refuses_unusable_provider_settings_naming_them(check: Check, env: dict[str, str], message: str) -> None:
    result = check(**env)
    assert result.code == EXIT_CONFIG
    assert message in result.err


POLICY = """
default_role = "user"
[roles.user.capability]
"chat:*" = ["subscribe"]
[roles.staff.capability]
"*" = ["*"]

[[issuers]]
issuer = "https://tenant.eu.auth0.com/"
audience = "https://chat.example.com"
role_claim = "https://chat.example.com/roles"
client_id_prefix = "auth0."

[[issuers]]
issuer = "https://keycloak.example.com/realms/chat"
audience = ["chat-web", "account"]
client_id_claim = "preferred_username"
role_claim = "realm_access.roles"
role = "staff"
client_id_prefix = "kc-"
"""


def test_check_lists_the_providers_of_the_environment_and_the_policy_file(check: Check, tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text(POLICY, encoding="utf-8")
    result = check(
        AUTHSERVER_POLICY=str(tmp_path / "policy.toml"),
        OIDC_ISSUER="https://accounts.google.com",
        OIDC_AUDIENCE="1234.apps.googleusercontent.com",
        OIDC_CLIENT_ID_CLAIM="email",
        AUTHSERVER_ALLOWED_ORIGINS="https://app.example.com",
    )
    assert result.code == EXIT_OK, result.err
    lines = result.out.splitlines()
    assert (
        "  identity provider: https://accounts.google.com (audience 1234.apps.googleusercontent.com; clientId from"
        " claim 'email'; role 'user'; leeway 30s)"
    ) in lines
    assert any("https://tenant.eu.auth0.com/" in line and "roles from claim" in line for line in lines)
    assert any(
        "realms/chat (audience chat-web, account; clientId 'kc-' + claim 'preferred_username'" in x for x in lines
    )
    assert "  trusted front-end origins (CORS and CSRF): https://app.example.com" in lines


def test_check_says_where_to_register_the_back_channel_logout_uri(check: Check) -> None:
    result = check(
        OIDC_ISSUER="https://login.example.com",
        OIDC_AUDIENCE="https://chat.example.com",
        OIDC_BACKCHANNEL_LOGOUT_AUDIENCE="chat-web, chat-mobile",
        AUTHSERVER_PUBLIC_URL="https://auth.example.com",
    )
    assert result.code == EXIT_OK, result.err
    assert (
        "  back-channel logout from https://login.example.com (aud chat-web, chat-mobile): register the"
        " backchannel_logout_uri https://auth.example.com/oidc/backchannel-logout"
    ) in result.out.splitlines()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('issuer = "https://i.example"\naudience = "a"\nrole = "nobody"', "role 'nobody' is not one of the roles"),
        ('issuer = "http://i.example"\naudience = "a"', "must use https"),
        ('issuer = "https://i.example"', "an audience is required"),
        ('issuer = "https://i.example"\naudience = "a"\nalgorithms = ["HS256"]', "HS256 are not allowed"),
        ('issuer = "https://i.example"\naudience = "a"\ncolour = "red"', "unknown field(s): colour"),
        (
            'issuer = "https://i.example"\naudience = "a"\nbackchannel_logout_audience = [1]',
            "backchannel_logout_audience must be a list of strings",
        ),
    ],
)
def test_check_refuses_a_bad_issuers_table(check: Check, tmp_path: Path, table: str, message: str) -> None:
    policy = 'default_role = "user"\n[roles.user.capability]\n"chat:*" = ["subscribe"]\n[[issuers]]\n' + table
    (tmp_path / "policy.toml").write_text(policy, encoding="utf-8")
    result = check(AUTHSERVER_POLICY=str(tmp_path / "policy.toml"))
    assert result.code == EXIT_CONFIG
    assert message in result.err


def test_check_and_serve_refuse_two_issuers_without_a_client_id_prefix_naming_them(
    check: Check, tmp_path: Path
) -> None:
    (tmp_path / "policy.toml").write_text(POLICY.replace('client_id_prefix = "auth0."', ""), encoding="utf-8")
    env = {
        "AUTHSERVER_POLICY": str(tmp_path / "policy.toml"),
        "OIDC_ISSUER": "https://accounts.google.com",
        "OIDC_AUDIENCE": "1234.apps.googleusercontent.com",
    }
    result = check(**env)
    assert result.code == EXIT_CONFIG
    assert "issuers https://accounts.google.com, https://tenant.eu.auth0.com/ all map a claim straight" in result.err
    assert "keycloak" not in result.err
    assert main(["serve"], environ=check.environ) == EXIT_CONFIG
    assert "client_id_prefix" in check.capsys.readouterr().err

    result = check(OIDC_CLIENT_ID_PREFIX="google.")
    assert result.code == EXIT_OK, result.err
    assert "clientId 'google.' + claim 'sub'" in result.out


def test_check_refuses_two_unprefixed_issuers_in_the_policy_file(check: Check, tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text(POLICY.replace('client_id_prefix = "kc-"', ""), encoding="utf-8")
    (tmp_path / "policy.toml").write_text(
        (tmp_path / "policy.toml").read_text().replace('client_id_prefix = "auth0."', ""), encoding="utf-8"
    )
    result = check(AUTHSERVER_POLICY=str(tmp_path / "policy.toml"))
    assert result.code == EXIT_CONFIG
    assert (
        "AUTHSERVER_POLICY: issuers https://tenant.eu.auth0.com/, https://keycloak.example.com/realms/chat"
        in result.err
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OIDC_CLIENT_ID_PREFIX": "acme:"}, "OIDC_CLIENT_ID_PREFIX: issuer https://i.example: client_id_prefix"),
        ({"OIDC_CLIENT_ID_PREFIX": "a."}, "OIDC_CLIENT_ID_PREFIX: set OIDC_ISSUER too"),
    ],
)
def test_check_refuses_an_unusable_oidc_client_id_prefix(check: Check, env: dict[str, str], message: str) -> None:
    if "set OIDC_ISSUER" not in message:
        env = {**env, "OIDC_ISSUER": "https://i.example", "OIDC_AUDIENCE": "a"}
    result = check(**env)
    assert result.code == EXIT_CONFIG
    assert message in result.err


def test_check_and_serve_refuse_provider_login_without_the_public_url(check: Check) -> None:
    """The redirect_uri sent to the provider comes from AUTHSERVER_PUBLIC_URL, never from a Host header."""
    provider = {"OIDC_ISSUER": "https://idp.example.com", "OIDC_AUDIENCE": "chat", "OIDC_CLIENT_ID": PAGE_CLIENT_ID}
    result = check(**provider)
    assert result.code == EXIT_CONFIG
    assert "AUTHSERVER_PUBLIC_URL: required with OIDC_CLIENT_ID" in result.err
    assert main(["serve"], environ=check.environ) == EXIT_CONFIG
    assert "AUTHSERVER_PUBLIC_URL: required with OIDC_CLIENT_ID" in check.capsys.readouterr().err

    result = check(AUTHSERVER_PUBLIC_URL="https://chat.example.com/")
    assert result.code == EXIT_OK, result.err
    assert "register the redirect URI https://chat.example.com/login/oidc/callback" in result.out


@pytest.mark.node
def test_check_online_fetches_discovery_and_keys_and_says_what_it_found(
    check: Check, shared_provider: Provider
) -> None:
    result = check(
        "--online",
        OIDC_ISSUER=shared_provider.issuer,
        OIDC_AUDIENCE=AUDIENCE,
        OIDC_CLIENT_ID=PAGE_CLIENT_ID,
        AUTHSERVER_PUBLIC_URL="https://chat.example.com",
    )
    assert result.code == EXIT_OK, result.err
    found = [line for line in result.out.splitlines() if line.startswith("  online:")]
    kids = {k["kid"]: k for k in shared_provider.keys}
    rsa = next(kid for kid in kids if kid.startswith("rsa"))
    assert f"keys from {shared_provider.issuer}/jwks" in found[0]
    assert f"{rsa} (RSA RS256)" in found[0] and "(EC ES256)" in found[0] and "(OKP EdDSA)" in found[0]
    assert found[1] == f"  online: page login: authorization at {shared_provider.issuer}/auth"


@pytest.mark.node
def test_check_online_fails_when_a_provider_cannot_be_reached(check: Check, own_provider: Provider) -> None:
    own_provider.stop()
    result = check("--online", OIDC_ISSUER=own_provider.issuer, OIDC_AUDIENCE=AUDIENCE)
    assert result.code == EXIT_CONFIG
    assert f"{own_provider.issuer}: ConnectError" in result.err
