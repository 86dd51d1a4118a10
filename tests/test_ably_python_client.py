"""The real ably-python client gets its tokens from /auth, with the session cookie in auth_headers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import jwt
import pytest
from ably import AblyRest

from authserver.app import create_app
from authserver.config import Settings
from authserver.identity.passwords import Passwords

from conftest import SettingsFactory
from helpers import KEY_SECRET, running_server


@pytest.fixture
def base_url(make_settings: SettingsFactory, fast_passwords: Passwords) -> Iterator[str]:
    settings: Settings = make_settings(TOKEN_TTL="600")
    app = create_app(settings, passwords=fast_passwords)
    asyncio.run(app.state.services.users.add("alice", "correct horse", role=None, client_id=None, now=0.0))
    with running_server(app) as url:
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
