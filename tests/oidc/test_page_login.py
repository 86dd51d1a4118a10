"""The page's "Log in with <provider>" in headless Chromium, end to end: the provider's own login and
consent pages, back to the page connected as the provider's user, in-band renewals, logout. Demo login
is off (production settings): a provider's session is not a demo session."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from authserver.core.keys import AblyKey
from authserver.http.app import create_app
from authserver.sandbox import create_sandbox_app

from .conftest import NODE_MODULES, PAGE_CLIENT_ID, PAGE_CLIENT_SECRET, Provider, oidc_env, unique
from conftest import SettingsFactory
from helpers import KEY_NAME, KEY_SECRET, bound_socket, log_in_at_the_provider, running_server

pytestmark = [pytest.mark.browser, pytest.mark.node]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


@dataclass
class Site:
    url: str
    provider: Provider


@pytest.fixture
def site(own_provider: Provider, make_settings: SettingsFactory) -> Iterator[Site]:
    if not (NODE_MODULES / "ably" / "build" / "ably.min.js").is_file():
        pytest.skip("ably-js is not installed under .cache/node (scripts/setup --test installs it)")
    sandbox = create_sandbox_app([AblyKey(KEY_NAME, KEY_SECRET)])
    # The service's address is its public URL (the redirect_uri), so its socket is bound first.
    with running_server(sandbox) as sandbox_url, bound_socket() as sock:
        public_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        settings = make_settings(
            TOKEN_TTL="33",
            ABLY_ENDPOINT=sandbox_url,
            ABLY_JS="local",
            OIDC_CLIENT_ID=PAGE_CLIENT_ID,
            OIDC_CLIENT_SECRET=PAGE_CLIENT_SECRET,
            OIDC_PROVIDER_NAME="Test IdP",
            AUTHSERVER_PUBLIC_URL=public_url,
            **oidc_env(own_provider),
        )
        assert not settings.demo_login
        with running_server(create_app(settings), sock=sock) as url:
            assert url == public_url
            own_provider.configure(redirect_uris=[f"{url}/login/oidc/callback"])
            yield Site(url, own_provider)


@pytest.fixture
def page() -> Iterator[Page]:
    from pathlib import Path

    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is missing")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_log_in_with_the_provider_connects_renews_and_logs_out(
    site: Site, page: Page, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    codes: list[str] = []
    page.on("request", lambda request: codes.extend(parse_qs(urlsplit(request.url).query).get("code", [])))
    name = unique("erin")
    page.goto(site.url)
    button = page.get_by_test_id("provider-login")
    expect(button).to_have_text("Log in with Test IdP", timeout=10_000)
    button.click()
    assert page.url.startswith(site.provider.issuer)  # the provider's own login page
    log_in_at_the_provider(page, name)

    page.wait_for_url(f"{site.url}/", timeout=15_000)
    expect(page.get_by_test_id("connection-state")).to_have_text("connected", timeout=15_000)
    expect(page.get_by_test_id("client-id")).to_have_text(name)
    expect(page.get_by_test_id("identity-source")).to_have_text(f"(provider: oidc:{site.provider.issuer}, role user)")
    expect(page.get_by_test_id("provider-login")).to_be_hidden()
    # 33 s tokens: the sandbox prompts a renewal (AUTH) 30 s before expiry, so about every 3 s.
    expect(page.get_by_test_id("renewal-count")).to_have_text(re.compile(r"^([3-9]|\d\d+)$"), timeout=60_000)
    expect(page.get_by_test_id("renewal-kinds")).to_contain_text("0 by reconnecting")
    expect(page.get_by_test_id("connection-state")).to_have_text("connected")

    cookies = {c["name"]: c["value"] for c in page.context.cookies() if c["name"] == "authserver_session"}
    assert cookies, "the provider login should have started a server-side session"
    page.get_by_test_id("logout-button").click()
    expect(page.get_by_test_id("provider-login")).to_be_visible(timeout=10_000)
    expect(page.get_by_test_id("client-id")).to_have_text("–")
    # The session ended on the server too: its cookie no longer gets a token, for good (logged out).
    after = httpx.get(f"{site.url}/auth", cookies=cookies)
    assert (after.status_code, after.json()["error"]["code"]) == (403, 40304)

    # Nothing secret in any log line: not the authorization code, not the session, no PKCE verifier.
    assert codes, "the provider should have redirected back with a code"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"login: clientId={name} role=user source=oidc:{site.provider.issuer}" in logged
    for secret in [*codes, cookies["authserver_session"], "code_verifier"]:
        assert secret not in logged


def test_a_login_refused_at_the_provider_comes_back_with_a_reason(site: Site, page: Page) -> None:
    page.goto(f"{site.url}/login/oidc/callback?error=access_denied&state=whatever")
    expect(page.get_by_test_id("error")).to_contain_text("Log in with Test IdP failed", timeout=10_000)
    expect(page.get_by_test_id("provider-login")).to_be_visible()


def test_a_callback_without_the_flow_it_belongs_to_is_refused(site: Site) -> None:
    """A forged callback (no state marker from this browser): no session, a reason on the page."""
    response = httpx.get(f"{site.url}/login/oidc/callback?code=stolen&state=forged", follow_redirects=False)
    assert response.status_code == 303
    assert "login_error" in response.headers["location"]
    assert "authserver_session" not in response.cookies


def test_a_callback_with_a_victims_state_but_not_its_flow_cookie_leaves_the_victims_login_alone(
    site: Site, page: Page
) -> None:
    """Whoever learns a victim's ``state`` (a log, a referrer) and calls the callback with it, with no flow
    cookie or one of their own, is refused, and the victim's flow is still there: the victim logs in."""
    states: list[str] = []
    provider_auth = f"{site.provider.issuer}/auth"
    page.on(
        "request",
        lambda request: (
            states.extend(parse_qs(urlsplit(request.url).query).get("state", []))
            if request.url.startswith(provider_auth + "?")
            else None
        ),
    )
    name = unique("vic")
    page.goto(site.url)
    page.get_by_test_id("provider-login").click()
    expect(page.locator("input[name=login]")).to_be_visible(timeout=15_000)
    [state] = states

    callback = f"{site.url}/login/oidc/callback"
    forged = httpx.get(callback, params={"code": "forged", "state": state}, follow_redirects=False)
    assert forged.status_code == 303 and "login_error" in forged.headers["location"]
    with httpx.Client(base_url=site.url) as attacker:  # with a flow cookie of the attacker's own
        assert attacker.get("/login/oidc", follow_redirects=False).status_code == 302
        forged = attacker.get(callback, params={"code": "forged", "state": state}, follow_redirects=False)
        assert forged.status_code == 303 and "login_error" in forged.headers["location"]
        assert "authserver_session" not in attacker.cookies

    log_in_at_the_provider(page, name)
    page.wait_for_url(f"{site.url}/", timeout=15_000)
    expect(page.get_by_test_id("client-id")).to_have_text(name, timeout=15_000)
    expect(page.get_by_test_id("error")).to_be_hidden()
