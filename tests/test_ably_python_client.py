"""The real ably-python client gets its tokens from /auth, with the session cookie in auth_headers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from ably import AblyRest

from authserver.cli.smoke import SmokeFailure, renewal_plan, stay_connected
from authserver.config import Settings
from authserver.core.keys import AblyKey
from authserver.http.app import create_app
from authserver.identity.passwords import Passwords
from authserver.sandbox import create_sandbox_app

from conftest import SettingsFactory
from helpers import KEY_NAME, KEY_SECRET, running_server


def service(make_settings: SettingsFactory, passwords: Passwords, token_ttl: int) -> Any:
    settings: Settings = make_settings(TOKEN_TTL=str(token_ttl))
    app = create_app(settings, passwords=passwords)
    asyncio.run(app.state.services.users.add("alice", "correct horse", role=None, client_id=None, now=0.0))
    return running_server(app)


@pytest.fixture
def base_url(make_settings: SettingsFactory, fast_passwords: Passwords) -> Iterator[str]:
    with service(make_settings, fast_passwords, 600) as url:
        yield url


def session_cookie(base_url: str) -> str:
    response = httpx.post(f"{base_url}/login", json={"username": "alice", "password": "correct horse"})
    response.raise_for_status()
    cookie = response.cookies["authserver_session"]
    assert cookie
    return cookie


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_ably_python_authorize_gets_a_token_from_auth_url(base_url: str, method: str) -> None:
    cookie = session_cookie(base_url)

    async def scenario() -> object:
        rest = AblyRest(
            auth_url=f"{base_url}/auth",
            auth_method=method,
            auth_headers={"Cookie": f"authserver_session={cookie}"},
            auth_params={"app": "demo"},  # app params ride along and are ignored
        )
        try:
            return await rest.auth.authorize()
        finally:
            await rest.close()

    details = asyncio.run(scenario())
    token = details.token  # type: ignore[attr-defined]
    claims = jwt.decode(token, KEY_SECRET, algorithms=["HS256"])
    assert claims["x-ably-clientId"] == "alice"
    assert claims["exp"] - claims["iat"] == 600
    assert details.client_id == "alice"  # type: ignore[attr-defined]
    assert details.expires == claims["exp"] * 1000  # type: ignore[attr-defined]


def test_ably_python_without_a_session_gets_a_401_it_can_retry(base_url: str) -> None:
    from ably.util.exceptions import AblyException

    async def scenario() -> AblyException:
        rest = AblyRest(auth_url=f"{base_url}/auth")
        try:
            await rest.auth.authorize()
        except AblyException as exc:
            return exc
        finally:
            await rest.close()
        raise AssertionError("authorize() succeeded without a session")

    error = asyncio.run(scenario())
    assert error.status_code == 401
    assert error.code == 40101


def sandbox_options(url: str) -> dict[str, Any]:
    return {"endpoint": "127.0.0.1", "port": int(url.rsplit(":", 1)[1]), "tls": False}


def test_ably_python_stays_connected_across_in_band_renewals_of_33_s_tokens(
    make_settings: SettingsFactory, fast_passwords: Passwords
) -> None:
    """What ``authserver smoke`` checks, with Ably's timing: AUTH 30 s before expiry, so every 3 s (RTN22)."""
    sandbox = create_sandbox_app([AblyKey(KEY_NAME, KEY_SECRET)])
    with service(make_settings, fast_passwords, 33) as url, running_server(sandbox) as sandbox_url:
        cookie = session_cookie(url)
        result = asyncio.run(
            stay_connected(url, cookie, sandbox_options(sandbox_url), renewals=2, timeout=40, channel="chat:smoke")
        )
    assert result == 0


def test_smoke_refuses_tokens_ably_would_renew_by_reconnecting_with_advice(
    make_settings: SettingsFactory, fast_passwords: Passwords
) -> None:
    sandbox = create_sandbox_app([AblyKey(KEY_NAME, KEY_SECRET)])
    with service(make_settings, fast_passwords, 10) as url, running_server(sandbox) as sandbox_url:
        cookie = session_cookie(url)
        with pytest.raises(SmokeFailure) as caught:
            asyncio.run(
                stay_connected(url, cookie, sandbox_options(sandbox_url), renewals=3, timeout=60, channel="chat:s")
            )
    assert "10 s tokens" in str(caught.value)
    assert "DISCONNECTED 40142" in str(caught.value) and "TOKEN_TTL of 35-40 s" in str(caught.value)


@pytest.mark.parametrize(
    ("lifetime", "renewals", "timeout", "fine"),
    [(35, 3, 120, True), (30, 1, 120, False), (3600, 1, 120, False), (3600, 1, 3700, True), (60, 3, 100, False)],
)
def test_smoke_plans_renewals_on_ablys_30_s_lead(lifetime: int, renewals: int, timeout: int, fine: bool) -> None:
    assert (renewal_plan(lifetime, renewals, timeout) is None) == fine
