"""Back-channel logout end to end: the real oidc-provider with its back-channel logout feature on, the
token service and the sandbox as Ably under uvicorn, the real ably-js (under Node) and ably-python.

A user signs in at the provider; ably-js and ably-python connect with the provider's access token in
their auth headers. The user signs out at the provider: the provider posts a logout token to the
service before it answers, both clients are disconnected with 40141, and the same access token can
never mint an Ably token again (403 40305, so ably-js goes FAILED instead of retrying). With the page's
"Log in with" button, a logout for one provider session (``sid``) ends exactly that browser's session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from ably import AblyRealtime
from ably.transport import websockettransport

from authserver.cli.smoke import connect_with_port
from authserver.core.keys import AblyKey
from authserver.http.app import create_app
from authserver.sandbox import create_sandbox_app

from .conftest import (
    NODE,
    NODE_MODULES,
    PAGE_CLIENT_ID,
    PAGE_CLIENT_SECRET,
    UNUSED_REDIRECT,
    Provider,
    follow_forms,
    oidc_env,
    unique,
)
from conftest import SettingsFactory
from helpers import KEY_NAME, KEY_SECRET, all_revoked, bound_socket, live_connections, running_server, until

pytestmark = pytest.mark.node
DRIVER = Path(__file__).resolve().parents[1] / "node" / "revocation_live.mjs"


@dataclass
class Stack:
    service: str
    sandbox_url: str
    sandbox_app: Any
    provider: Provider

    @property
    def sandbox(self) -> Any:
        return self.sandbox_app.state.sandbox

    @property
    def sandbox_port(self) -> int:
        return int(self.sandbox_url.rsplit(":", 1)[1])

    def live(self, client_id: str) -> int:
        return live_connections(self.sandbox, client_id)


@contextlib.contextmanager
def backchannel_stack(provider: Provider, make_settings: SettingsFactory, *, sid: bool) -> Iterator[Stack]:
    """The sandbox, and the service trusting ``provider`` with back-channel logout on, the page's button
    too; the provider registers the service's endpoint as the page client's backchannel_logout_uri."""
    sandbox_app = create_sandbox_app([AblyKey(KEY_NAME, KEY_SECRET)])
    with running_server(sandbox_app) as sandbox_url, bound_socket() as sock:
        public_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        settings = make_settings(
            ABLY_ENDPOINT=sandbox_url,
            ABLY_REVOCABLE_TOKENS="true",
            TOKEN_IAT_MARGIN="5",
            TOKEN_TTL="600",
            OIDC_CLIENT_ID=PAGE_CLIENT_ID,
            OIDC_CLIENT_SECRET=PAGE_CLIENT_SECRET,
            AUTHSERVER_PUBLIC_URL=public_url,
            OIDC_BACKCHANNEL_LOGOUT_AUDIENCE=PAGE_CLIENT_ID,
            **oidc_env(provider),
        )
        with running_server(create_app(settings), sock=sock) as service:
            provider.configure(
                redirect_uris=[UNUSED_REDIRECT, f"{service}/login/oidc/callback"],
                backchannel_logout_uri=f"{service}/oidc/backchannel-logout",
                backchannel_sid=sid,
            )
            yield Stack(service, sandbox_url, sandbox_app, provider)


@pytest.fixture
def stack(own_provider: Provider, make_settings: SettingsFactory) -> Iterator[Stack]:
    with backchannel_stack(own_provider, make_settings, sid=False) as running:
        yield running


@pytest.fixture(autouse=True)
def _ws_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(websockettransport.WebSocketTransport, "connect", connect_with_port)


def ably_python(stack: Stack, access_token: str) -> AblyRealtime:
    return AblyRealtime(
        auth_url=f"{stack.service}/auth",
        auth_headers={"Authorization": f"Bearer {access_token}"},
        endpoint="127.0.0.1",
        port=stack.sandbox_port,
        tls=False,
        use_binary_protocol=False,
    )


class JsDriver:
    """ably-js under Node (``tests/node/revocation_live.mjs``): the victim's and a bystander's clients
    with bearer tokens; ``go()`` once both are connected, ``result()`` what ably-js went through."""

    def __init__(self, stack: Stack, victim: str, bystander: str) -> None:
        if NODE is None or not (NODE_MODULES / "ably" / "package.json").is_file():
            pytest.skip("node or the ably npm package is missing (scripts/setup installs both)")
        scenario = {
            "port": stack.sandbox_port,
            "authUrl": f"{stack.service}/auth",
            "victimBearer": victim,
            "bystanderBearer": bystander,
            "expect": "revoked",
            "format": "json",
        }
        env = {**os.environ, "ABLY_JS_NODE_MODULES": str(NODE_MODULES), "SCENARIO": json.dumps(scenario)}
        self.process = subprocess.Popen(
            [NODE, str(DRIVER)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def ready(self) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the driver gives up (and prints) within its own time limit
        if not line.startswith('{"ready"'):
            out, err = self.process.communicate(timeout=10)
            pytest.fail(f"ably-js did not connect: {line}{out}\n{err[-2000:]}")

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def result(self) -> dict[str, Any]:
        out, err = self.process.communicate(timeout=60)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        assert lines, f"the driver printed no result; stderr: {err[-2000:]}"
        result: dict[str, Any] = json.loads(lines[-1])
        assert result["ok"], f"{result.get('error')}\ntrace: {result.get('trace')}"
        return result


@dataclass
class Observed:
    """One provider logout watched: when it began (epoch s), what ably-js and ably-python went through."""

    began: float
    js: dict[str, Any]
    #: ably-python's states after it connected, each with its reason's code and status
    python_states: list[tuple[str, int | None, int | None]]
    #: when the sandbox (Ably's side) no longer held a live connection of the user (epoch s)
    dropped_at: float


def python_state(change: Any) -> tuple[str, int | None, int | None]:
    reason = change.reason
    return change.current.value, getattr(reason, "code", None), getattr(reason, "status_code", None)


def sign_out_and_watch(stack: Stack, victim: str) -> tuple[Observed, str]:
    """``victim`` signs in at the provider; ably-js and ably-python connect with the access token (and a
    bystander with another user's); the victim signs out at the provider. Returns what the clients saw,
    and the victim's access token."""
    browser, other = httpx.Client(), httpx.Client()
    token = stack.provider.sign_in(browser, victim)["access_token"]
    bystander = stack.provider.sign_in(other, unique("bob"))["access_token"]

    async def scenario() -> Observed:
        python = ably_python(stack, token)
        states: list[tuple[str, int | None, int | None]] = []
        python.connection.on(lambda change: states.append(python_state(change)))
        driver = JsDriver(stack, token, bystander)
        try:
            await asyncio.to_thread(driver.ready)
            await until(lambda: stack.live(victim) == 2, timeout=10, what="both clients connected")
            driver.go()
            began = time.time()
            response = await asyncio.to_thread(stack.provider.end_session, browser)
            assert response.status_code in (200, 303), response.text[:300]
            await until(lambda: stack.live(victim) == 0, timeout=10, what="both clients disconnected")
            dropped = time.time()
            await until(lambda: bool(states) and states[-1][0] == "failed", timeout=10, what="ably-python FAILED")
            return Observed(began, await asyncio.to_thread(driver.result), states, dropped)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(python.close(), timeout=5)

    try:
        return asyncio.run(asyncio.wait_for(scenario(), timeout=90)), token
    finally:
        browser.close()
        other.close()


def test_signing_out_at_the_provider_disconnects_ably_js_and_ably_python_with_40141_for_good(stack: Stack) -> None:
    victim = unique("vera")
    observed, token = sign_out_and_watch(stack, victim)

    js = observed.js
    disconnected = next(c for c in js["changes"] if c["code"] == 40141)  # Ably dropped the revoked token
    assert disconnected["current"] == "disconnected"
    # its renewal through the authUrl, with the same access token, is refused for good: FAILED, no retry
    assert js["settled"] == js["state"] == "failed"
    assert js["reason"] == {"code": 80019, "statusCode": 403, "cause": 40305}
    assert js["bystander"]["state"] == "connected" and js["bystander"]["sameConnection"]
    # ably-python's connection was dropped for its revoked token too (observed at the sandbox: 40141; the
    # client renews on 40141 without reporting it), and its renewal is refused for good: FAILED
    assert all_revoked(stack.sandbox, victim) and stack.live(victim) == 0
    assert ("failed", 80019, 403) in observed.python_states

    again = httpx.get(f"{stack.service}/auth", headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == 403
    assert again.json()["error"]["code"] == 40305


def page_login(stack: Stack, browser: httpx.Client, name: str) -> str:
    """The page's "Log in with" button, as a browser follows it; returns the service's session cookie."""
    begin = browser.get(f"{stack.service}/login/oidc")
    callback = follow_forms(browser, begin, name, f"{stack.service}/login/oidc/callback")
    landed = browser.get(callback)
    assert landed.status_code == 303 and landed.headers["location"] == "/", landed.headers
    return str(browser.cookies.get("authserver_session", domain="127.0.0.1"))


def test_a_logout_for_one_provider_session_ends_exactly_that_browsers_page_session(
    own_provider: Provider, make_settings: SettingsFactory
) -> None:
    with backchannel_stack(own_provider, make_settings, sid=True) as stack:
        name = unique("pia")
        first, second = httpx.Client(), httpx.Client()
        try:
            cookies = [page_login(stack, first, name), page_login(stack, second, name)]
            for cookie in cookies:
                assert httpx.get(f"{stack.service}/auth", cookies={"authserver_session": cookie}).status_code == 200
            assert stack.provider.end_session(first).status_code in (200, 303)
            ended = httpx.get(f"{stack.service}/auth", cookies={"authserver_session": cookies[0]})
            assert (ended.status_code, ended.json()["error"]["code"]) == (403, 40305)
            assert "logged out at your identity provider" in ended.json()["error"]["message"]
            kept = httpx.get(f"{stack.service}/auth", cookies={"authserver_session": cookies[1]})
            assert kept.status_code == 200  # the same user's other browser: another provider session
        finally:
            first.close()
            second.close()
