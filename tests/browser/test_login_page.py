"""End to end: the login page in headless Chromium against ``authserver serve`` and its sandbox.

The whole mission in one run: log in, connect with ``authUrl: '/auth'``, publish and receive across
at least three token renewals (TTL 6 s) without ever leaving "connected", see a forbidden publish
refused with 40160, log out. The console must stay free of errors and CSP violations.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from .conftest import ARTIFACTS, PASSWORD, TOKEN_TTL, USERNAME, ConsoleLog, Service, browsing

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

RENEWALS = 3
PUBLISH_EVERY = 1.5  # seconds
# Three renewals take about 3 * TTL; the sandbox renews ahead of expiry, so allow plenty of slack.
RENEWAL_DEADLINE = RENEWALS * TOKEN_TTL + 25.0

# Network answers the service gives on purpose; Chromium logs each as "Failed to load resource".
NOT_LOGGED_IN = ("/session", "status of 401")
WRONG_PASSWORD = ("/login", "status of 401")
UNREACHABLE = ("/login", "net::ERR_FAILED")
SESSION_GONE = ("/auth", "status of 401")


@contextmanager
def server_log_on_failure(service: Service) -> Iterator[None]:
    """A failed assertion carries the tail of the service's log: what the server saw matters."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- authserver log ---\n{service.log_tail()}") from None


def states_shown(page: Page) -> list[str]:
    states: list[str] = page.evaluate("() => window.__authserverPage.states")
    return states


def client_states(page: Page) -> list[str]:
    states: list[str] = page.evaluate("() => window.__testRealtimeClients.map((c) => c.connection.state)")
    return states


def assert_clean_console(page: Page, console: ConsoleLog, *allowed: tuple[str, str]) -> None:
    violations: list[str] = page.evaluate("() => window.__cspViolations")
    assert violations == [], f"CSP violations: {violations}"
    problems = console.problems(allowed)
    assert problems == [], "console errors:\n" + "\n".join(problems)


def log_in(page: Page, password: str, username: str = USERNAME) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def open_page(page: Page, service: Service) -> None:
    page.goto(f"{service.base_url}/")
    expect(page.get_by_role("button", name="Log in")).to_be_enabled(timeout=10_000)


def attach(page: Page, channel: str) -> None:
    page.get_by_label("Channel name").fill(channel)
    page.get_by_test_id("attach-button").click()
    expect(page.get_by_test_id("channel-state")).to_have_text(f"{channel} (attached)", timeout=10_000)


def publish(page: Page, text: str) -> None:
    page.get_by_label("Message", exact=True).fill(text)
    page.get_by_test_id("publish-button").click()


def test_login_stay_connected_across_renewals_and_log_out(page: tuple[Page, ConsoleLog], service: Service) -> None:
    browser_page, console = page
    with server_log_on_failure(service):
        run_main_scenario(browser_page, console, service)


def run_main_scenario(page: Page, console: ConsoleLog, service: Service) -> None:
    started = time.monotonic()
    open_page(page, service)
    expect(page.get_by_test_id("ably-target")).to_contain_text("sandbox at 127.0.0.1")

    # A wrong password: a clear message, and no Ably client at all.
    log_in(page, "not-the-password")
    expect(page.get_by_test_id("error")).to_have_text("Wrong username or password.")
    assert page.evaluate("() => window.__testRealtimeClients.length") == 0
    assert page.evaluate("() => window.__authserverPage.clientsCreated") == 0
    assert "password" not in page.url and "alice" not in page.url  # never in a URL

    # A server that cannot be reached: a different, clear message, still no client.
    page.route("**/login", lambda route: route.abort())
    log_in(page, PASSWORD)
    expect(page.get_by_test_id("error")).to_contain_text("Cannot reach the server")
    page.unroute("**/login")
    assert page.evaluate("() => window.__testRealtimeClients.length") == 0

    # The right password, submitted twice in a row: exactly one client, and it connects.
    page.get_by_label("Password").fill(PASSWORD)
    page.evaluate("() => { const f = document.getElementById('login-form'); f.requestSubmit(); f.requestSubmit(); }")
    state = page.get_by_test_id("connection-state")
    expect(state).to_have_text("connected", timeout=15_000)
    expect(page.get_by_test_id("error")).to_be_hidden()
    assert client_states(page) == ["connected"]
    assert page.get_by_role("status").filter(has_text="connected").count() == 1  # announced to assistive tech
    expect(page.get_by_test_id("client-id")).to_have_text(USERNAME)
    capability = page.get_by_test_id("capability")
    expect(capability).to_contain_text("chat:*")
    expect(capability).to_contain_text("announcements: ")
    expect(page.get_by_test_id("token-expiry")).to_have_text(re.compile(r"^\d+ s$"))
    expect(page.get_by_test_id("renewal-count")).to_have_text("0")

    # Attach a channel the capability allows; the page enters presence.
    attach(page, "chat:e2e")
    expect(page.get_by_test_id("channel-ops")).to_contain_text("publish")
    expect(page.get_by_test_id("presence-list").get_by_text(USERNAME, exact=True)).to_be_visible(timeout=10_000)

    # Publish every 1.5 s and see each message come back from alice, until three renewals passed
    # and two more messages made the round trip after the last of them.
    renewals_seen = [0]
    sent = after_renewals = 0
    deadline = time.monotonic() + RENEWAL_DEADLINE
    while renewals_seen[-1] < RENEWALS or after_renewals < 2:
        assert time.monotonic() < deadline, f"only {renewals_seen[-1]} renewals in {RENEWAL_DEADLINE:.0f} s"
        sent += 1
        text = f"e2e message {sent}"
        publish(page, text)
        item = page.get_by_test_id("message-list").locator("li", has=page.get_by_text(text, exact=True))
        expect(item).to_have_attribute("data-client-id", USERNAME, timeout=5_000)
        expect(item.locator(".who")).to_have_text(USERNAME)
        expect(state).to_have_text("connected")
        if renewals_seen[-1] >= RENEWALS:
            after_renewals += 1
        renewals = int(page.get_by_test_id("renewal-count").inner_text())
        if renewals != renewals_seen[-1]:
            renewals_seen.append(renewals)
        page.wait_for_timeout(PUBLISH_EVERY * 1000)
    assert renewals_seen == sorted(renewals_seen), f"renewal count went down: {renewals_seen}"
    assert renewals_seen[-1] >= RENEWALS

    # Across all of it the connection never left "connected" (every state the page showed).
    shown = states_shown(page)
    after_connect = shown[shown.index("connected") :]
    assert set(after_connect) == {"connected"}, f"states shown: {shown}"
    events: list[dict[str, Any]] = page.evaluate("() => window.__authserverPage.events")
    first = next(i for i, e in enumerate(events) if e["current"] == "connected")
    left = [e for e in events[first:] if e["current"] != "connected"]
    assert left == [], f"connection left 'connected': {left}"
    assert client_states(page) == ["connected"]

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "login-page-connected.png"), full_page=True)
    # Phone-sized: nothing wider than the screen.
    page.set_viewport_size({"width": 375, "height": 812})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
    page.screenshot(path=str(ARTIFACTS / "login-page-connected-375px.png"), full_page=True)
    page.set_viewport_size({"width": 1100, "height": 900})

    # A publish the capability forbids (announcements: subscribe + history) is refused with 40160.
    attach(page, "announcements")
    expect(page.get_by_test_id("channel-ops")).to_have_text("history, subscribe")
    publish(page, "not allowed here")
    expect(page.get_by_test_id("channel-error")).to_contain_text("40160", timeout=10_000)
    expect(page.get_by_test_id("channel-error")).to_have_attribute("role", "alert")
    expect(state).to_have_text("connected")

    # Log out: the client closes and the page says the session ended.
    page.get_by_role("button", name="Log out").click()
    expect(state).to_have_text("closed", timeout=10_000)
    expect(page.get_by_test_id("notice")).to_contain_text("Session ended")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert client_states(page) == ["closed"]
    assert page.evaluate("() => fetch('/session').then((r) => r.status)") == 401

    assert_clean_console(page, console, NOT_LOGGED_IN, WRONG_PASSWORD, UNREACHABLE)
    assert "Traceback" not in service.log_tail(10_000)
    print(f"main scenario: {time.monotonic() - started:.1f} s, renewals seen {renewals_seen}, messages {sent}")


def test_session_ended_elsewhere_stops_the_client(page: tuple[Page, ConsoleLog], service: Service) -> None:
    browser_page, console = page
    with server_log_on_failure(service):
        run_session_ended_scenario(browser_page, console, service)


def run_session_ended_scenario(page: Page, console: ConsoleLog, service: Service) -> None:
    open_page(page, service)
    log_in(page, PASSWORD)
    state = page.get_by_test_id("connection-state")
    expect(state).to_have_text("connected", timeout=15_000)

    # A reload keeps the session (GET /session) and connects again, with one client.
    page.reload()
    expect(state).to_have_text("connected", timeout=15_000)
    expect(page.get_by_role("button", name="Log in")).to_be_hidden()
    assert client_states(page) == ["connected"]

    # The session ends behind the page's back (another tab logged out): the next renewal gets 401.
    status = page.evaluate(
        "() => fetch('/logout', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{}'})"
        ".then((r) => r.status)"
    )
    assert status == 200
    notice = page.get_by_test_id("notice")
    expect(notice).to_contain_text("Session ended, please log in again", timeout=(3 * TOKEN_TTL + 15) * 1000)
    expect(state).to_have_text("closed", timeout=5_000)
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert client_states(page) == ["closed"]
    assert_clean_console(page, console, NOT_LOGGED_IN, SESSION_GONE)
    assert "Traceback" not in service.log_tail(10_000)


def test_a_disabled_account_is_a_final_refusal_the_page_shows(page: tuple[Page, ConsoleLog], service: Service) -> None:
    browser_page, console = page
    try:
        with server_log_on_failure(service):
            run_disabled_scenario(browser_page, console, service)
    finally:
        service.cli("users", "enable", USERNAME)


def run_disabled_scenario(page: Page, console: ConsoleLog, service: Service) -> None:
    open_page(page, service)
    log_in(page, PASSWORD)
    state = page.get_by_test_id("connection-state")
    expect(state).to_have_text("connected", timeout=15_000)

    # The operator disables the account: the next renewal gets 403, which ably-js treats as final.
    service.cli("users", "disable", USERNAME)
    expect(state).to_have_text("failed", timeout=(2 * TOKEN_TTL + 10) * 1000)
    error = page.get_by_test_id("error")
    expect(error).to_contain_text("40300")
    expect(error).to_contain_text("account is disabled")
    assert client_states(page) == ["failed"]
    assert_clean_console(page, console, NOT_LOGGED_IN, ("/auth", "status of 403"))


def test_everyone_on_a_channel_sees_each_others_messages_and_presence(
    page: tuple[Page, ConsoleLog], browser: Browser, service: Service
) -> None:
    alice, alice_console = page
    service.cli("users", "add", "bob", stdin="bob-password\n")
    with browsing(browser) as (bob, bob_console), server_log_on_failure(service):
        for person, name, password in ((alice, USERNAME, PASSWORD), (bob, "bob", "bob-password")):
            open_page(person, service)
            log_in(person, password, username=name)
            expect(person.get_by_test_id("connection-state")).to_have_text("connected", timeout=15_000)
            attach(person, "chat:together")
        for person in (alice, bob):
            present = person.get_by_test_id("presence-list")
            for name in (USERNAME, "bob"):
                expect(present.get_by_text(name, exact=True)).to_be_visible(timeout=10_000)
        for sender, receiver, name in ((bob, alice, "bob"), (alice, bob, USERNAME)):
            text = f"hello from {name}"
            publish(sender, text)
            item = receiver.get_by_test_id("message-list").locator("li", has=receiver.get_by_text(text, exact=True))
            expect(item).to_have_attribute("data-client-id", name, timeout=5_000)
        assert_clean_console(alice, alice_console, NOT_LOGGED_IN)
        assert_clean_console(bob, bob_console, NOT_LOGGED_IN)
