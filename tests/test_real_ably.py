"""Against real Ably: only with a real ABLY_API_KEY in the environment and Ably reachable.

Skipped otherwise (CI has neither). Proves that the tokens this service signs are accepted by the
real Ably service, not just by our sandbox.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator

import httpx
import pytest

from authserver.cli.smoke import stay_connected
from authserver.config import load_settings
from authserver.http.app import create_app
from authserver.identity.passwords import Passwords

from helpers import running_server

ABLY_HOST = "main.realtime.ably.net"

pytestmark = pytest.mark.real_ably


def ably_reachable() -> bool:
    try:
        with socket.create_connection((ABLY_HOST, 443), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def real_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    key = os.environ.get("ABLY_API_KEY")
    if not key:
        pytest.skip("needs a real ABLY_API_KEY in the environment")
    if not ably_reachable():
        pytest.skip(f"{ABLY_HOST}:443 is not reachable from here")
    workdir = tmp_path_factory.mktemp("real")
    settings = load_settings(
        {
            "ABLY_API_KEY": key,
            "SESSION_SECRET": "real-ably-test-session-secret-0123456789",
            "DATABASE_URL": f"sqlite:///{workdir}/users.db",
            "AUTHSERVER_DEMO_LOGIN": "true",
            "TOKEN_TTL": "60",
        },
        env_file=None,
    )
    app = create_app(settings, passwords=Passwords(time_cost=1, memory_cost=8192, parallelism=1))
    with running_server(app) as url:
        yield url


def test_real_ably_accepts_our_tokens_and_renews_them(real_service: str) -> None:
    response = httpx.post(f"{real_service}/login", json={"username": "authserver-test", "password": "x"})
    assert response.status_code == 200
    cookie = response.cookies["authserver_session"]
    # One renewal: Ably sends AUTH 30 s before the 60 s token expires.
    result = asyncio.run(stay_connected(real_service, cookie, {}, renewals=1, timeout=90, channel="chat:authserver"))
    assert result == 0
