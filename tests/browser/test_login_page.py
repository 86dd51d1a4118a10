"""End to end: the login page in headless Chromium against ``authserver serve`` and its sandbox.

The whole mission in one run: log in, connect with ``authUrl: '/auth'``, publish and receive across at
least three token renewals without ever leaving "connected", see them on the timeline, see a forbidden
publish refused with 40160, log out. Every state of the page is screenshotted into ``tests/artifacts/``
and at each screenshot the console must be free of errors and CSP violations (only the HTTP answers a
scenario provokes on purpose are named and excused: see :meth:`ConsoleLog.problems`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from .conftest import ARTIFACTS, PASSWORD, SHORT_TOKEN_TTL, TOKEN_TTL, USERNAME, ConsoleLog, Service, browsing

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

RENEWALS = 3
PUBLISH_EVERY = 1.5  # seconds
# A renewal comes at most TOKEN_TTL after the last one, whatever the sandbox's AUTH lead.
RENEWAL_DEADLINE = RENEWALS * TOKEN_TTL + 30.0
# A token ends at most TOKEN_TTL after it was issued: by then every refusal has reached the page.
REFUSAL_TIMEOUT_MS = (TOKEN_TTL + 20) * 1000
PHONE: ViewportSize = {"width": 375, "height": 812}
DESKTOP: ViewportSize = {"width": 1100, "height": 900}

# HTTP answers the scenarios provoke on purpose (Chromium logs each as "Failed to load resource").
WRONG_PASSWORD: tuple[str, int | str] = ("/login", 401)
UNREACHABLE: tuple[str, int | str] = ("/login", "net::ERR_FAILED")  # the test aborts that request
SESSION_ENDED: tuple[str, int | str] = ("/auth", 403)  # a session ended elsewhere, a disabled account
# The page learns of a revocation at once (Ably drops the connection with 40141, /auth refuses the
# renewal); a change made by the CLI (another process, no Redis) reaches the service's session memory
# within a second, so at worst the next renewal (a few seconds with TOKEN_TTL) brings the refusal.
ENDED_ELSEWHERE_S = 5.0


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


def assert_clean_console(page: Page, console: ConsoleLog, answered: Collection[tuple[str, int | str]] = ()) -> None:
    violations: list[str] = page.evaluate("() => window.__cspViolations")
    assert violations == [], f"CSP violations: {violations}"
    problems = console.problems(answered)
    assert problems == [], "console errors:\n" + "\n".join(problems)


def snapshot(
    page: Page, console: ConsoleLog, name: str, answered: Collection[tuple[str, int | str]] = (), *, phone: bool = False
) -> None:
    """Screenshot one state of the page (desktop, and phone width when asked) with a clean console."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"login-page-{name}.png"), full_page=True)
    if phone:
        page.set_viewport_size(PHONE)
        # Phone-sized: nothing wider than the screen.
        expect(page.locator("html")).to_have_js_property("scrollWidth", 375)
        page.screenshot(path=str(ARTIFACTS / f"login-page-{name}-375px.png"), full_page=True)
        page.set_viewport_size(DESKTOP)
    assert_clean_console(page, console, answered)


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


def message_item(page: Page, text: str) -> Any:
    return page.get_by_test_id("message-list").locator("li", has=page.get_by_text(text, exact=True))


def test_login_stay_connected_across_renewals_and_log_out(page: tuple[Page, ConsoleLog], service: Service) -> None:
    browser_page, console = page
    with server_log_on_failure(service):
        run_main_scenario(browser_page, console, service)


def run_main_scenario(page: Page, console: ConsoleLog, service: Service) -> None:
    started = time.monotonic()
    open_page(page, service)
    expect(page.get_by_test_id("ably-target")).to_contain_text("sandbox at 127.0.0.1")
    # A fresh load while logged out: GET /session answers 200, so the console stays clean (no red 401).
    expect(page.get_by_test_id("demo-hint")).to_be_hidden()  # demo login is off here
    snapshot(page, console, "logged-out", phone=True)

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
    provoked = [WRONG_PASSWORD, UNREACHABLE]

    # The right password, submitted twice in a row: exactly one client, and it connects.
    page.get_by_label("Password").fill(PASSWORD)
    page.evaluate("() => { const f = document.getElementById('login-form'); f.requestSubmit(); f.requestSubmit(); }")
    state = page.get_by_test_id("connection-state")
    expect(state).to_have_text("connected", timeout=15_000)
    expect(page.get_by_test_id("error")).to_be_hidden()
    assert client_states(page) == ["connected"]
    expect(state).to_have_attribute("aria-live", "polite")  # state changes are announced
    expect(page.get_by_test_id("client-id")).to_have_text(USERNAME)
    expect(page.get_by_test_id("identity-source")).to_have_text("(account, role user)")
    capability = page.get_by_test_id("capability")
    expect(capability.locator("tr", has_text="chat:*")).to_contain_text("history, presence, publish, subscribe")
    expect(capability.locator("tr", has_text="announcements")).to_contain_text("history, subscribe")
    expect(capability.locator("tr", has_text=f"private:{USERNAME}")).to_contain_text("everything (*)")
    expect(page.get_by_test_id("claims").locator("tr", has_text="x-ably-clientId")).to_contain_text(USERNAME)
    expect(page.get_by_test_id("jwt-header").locator("tr", has_text="alg")).to_contain_text("HS256")
    expect(page.get_by_test_id("token-expiry")).to_have_text(re.compile(r"^\d+ s$"))
    expect(page.get_by_test_id("renewal-count")).to_have_text("0")

    # The raw JWT only on request, and it is the very token the client holds.
    raw = page.get_by_test_id("raw-token")
    expect(raw).to_be_hidden()
    page.get_by_role("button", name="Show the raw token").click()
    expect(raw).to_be_visible()
    expect(page.get_by_role("button", name="Hide the raw token")).to_have_attribute("aria-expanded", "true")
    shown_token = raw.inner_text()
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", shown_token), shown_token
    page.get_by_role("button", name="Hide the raw token").click()
    expect(raw).to_be_hidden()

    # Attach a channel the capability allows: the service says what is allowed; the page enters presence.
    attach(page, "chat:e2e")
    expect(page.get_by_test_id("channel-ops")).to_have_text("history, presence, publish, subscribe")
    expect(page.get_by_test_id("presence-list").get_by_text(USERNAME, exact=True)).to_be_visible(timeout=10_000)
    snapshot(page, console, "connected", provoked, phone=True)

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
        item = message_item(page, text)
        expect(item).to_have_attribute("data-client-id", USERNAME, timeout=5_000)
        # one layout for every message: time, who, text
        expect(item.locator(":scope > *")).to_have_count(3)
        expect(item.locator(":scope > time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
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

    # The renewals are on the timeline: one bar per token, each renewal marked as in band (AUTH).
    tokens: list[dict[str, Any]] = page.evaluate("() => window.__authserverPage.tokens")
    assert [t["kind"] for t in tokens] == ["first"] + ["in-band"] * (len(tokens) - 1), tokens
    renewed = len(tokens) - 1
    expect(page.get_by_test_id("renewal-kinds")).to_have_text(re.compile(r"^\(\d+ in band, 0 by reconnecting\)$"))
    timeline = page.get_by_test_id("timeline")
    assert timeline.locator("circle.mark-in-band").count() >= min(renewed, 2)
    assert timeline.locator("circle.mark-reconnect").count() == 0
    assert timeline.locator("rect.bar-life").count() >= 2
    expect(page.get_by_test_id("timeline-summary")).to_contain_text("renewals in band (AUTH), 0 renewals by")
    log = page.get_by_test_id("event-log")
    # Renewals go on (one every few seconds) while this runs: the log and the model are compared at one
    # moment, in the page, until the log has caught up with every in-band token the model holds.
    page.wait_for_function(
        """(renewed) => {
            const inBand = window.__authserverPage.tokens.filter((t) => t.kind === 'in-band').length;
            const items = [...document.querySelectorAll('[data-testid="event-log"] li')];
            const logged = items.filter((li) => li.textContent.includes('token renewed in band (AUTH)'));
            return inBand >= renewed && logged.length === inBand;
        }""",
        arg=renewed,
        timeout=5_000,
    )
    expect(log.locator("li").first.locator("time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
    snapshot(page, console, "renewals", provoked, phone=True)

    # Where the service says publishing is not allowed (announcements: subscribe + history), the page
    # offers no publish at all, and says why.
    attach(page, "announcements")
    expect(page.get_by_test_id("channel-ops")).to_have_text("history, subscribe")
    expect(page.get_by_test_id("publish-button")).to_be_disabled()
    expect(page.get_by_label("Message", exact=True)).to_be_disabled()
    expect(page.get_by_test_id("publish-hint")).to_have_text(
        "You may not publish on announcements (allowed: history, subscribe)."
    )
    expect(page.get_by_test_id("channel-error")).to_be_hidden()
    expect(state).to_have_text("connected")
    snapshot(page, console, "forbidden", provoked)

    # Log out: the client closes, and nothing of alice's session stays on screen.
    page.get_by_role("button", name="Log out").click()
    expect(state).to_have_text("closed", timeout=10_000)
    expect(page.get_by_test_id("notice")).to_have_text("You are logged out.")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert_cleared(page)
    assert client_states(page) == ["closed"]
    assert page.evaluate("() => fetch('/session').then((r) => r.json())") == {"loggedIn": False, "demoLogin": False}

    assert_clean_console(page, console, provoked)
    assert not console.mentions(shown_token.split(".")[2]), "a token reached the console"
    assert "Traceback" not in service.log_tail(10_000)
    print(f"main scenario: {time.monotonic() - started:.1f} s, renewals seen {renewals_seen}, messages {sent}")


def assert_cleared(page: Page) -> None:
    """After a logout or a session ended elsewhere: no clientId, token, capability or renewal count."""
    expect(page.get_by_test_id("client-id")).to_have_text("–")
    expect(page.get_by_test_id("identity-source")).to_have_text("")
    expect(page.get_by_test_id("renewal-count")).to_have_text("0")
    expect(page.get_by_test_id("token-expiry")).to_have_text("–")
    expect(page.get_by_test_id("token-section")).to_be_hidden()
    expect(page.get_by_test_id("capability")).to_be_hidden()
    expect(page.get_by_test_id("channel-section")).to_be_hidden()


def test_session_ended_elsewhere_stops_the_client(page: tuple[Page, ConsoleLog], service: Service) -> None:
    browser_page, console = page
    with server_log_on_failure(service):
        run_session_ended_scenario(browser_page, console, service)


def run_session_ended_scenario(page: Page, console: ConsoleLog, service: Service) -> None:
    open_page(page, service)
    log_in(page, PASSWORD)
    state = page.get_by_test_id("connection-state")
    expect(state).to_have_text("connected", timeout=15_000)
    attach(page, "chat:remembered")

    # A reload keeps the session (GET /session), connects again with one client, and goes back to
    # the channel of last time (remembered in localStorage).
    page.reload()
    expect(state).to_have_text("connected", timeout=15_000)
    expect(page.get_by_role("button", name="Log in")).to_be_hidden()
    expect(page.get_by_label("Channel name")).to_have_value("chat:remembered")
    expect(page.get_by_test_id("channel-state")).to_have_text("chat:remembered (attached)", timeout=10_000)
    assert client_states(page) == ["connected"]

    # The session ends behind the page's back while the browser still holds the cookie (the operator
    # changes the password: every session of the account ends and its tokens are revoked). Ably drops
    # the connection (40141), the renewal gets the service's final 403 saying why, and the page says so
    # in plain words, not ably-js's generic 80019 nor any error number.
    service.cli("users", "set-password", USERNAME, stdin=f"{PASSWORD}\n")
    notice = page.get_by_test_id("notice")
    expect(notice).to_have_text("Your password was changed; log in again.", timeout=REFUSAL_TIMEOUT_MS)
    expect(state).to_have_text(re.compile(r"^(closed|failed)$"), timeout=5_000)
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    expect(page.get_by_test_id("error")).to_be_hidden()
    assert not re.search(r"\b\d{5}\b", page.locator("main").inner_text().split("Event log")[0])
    assert_cleared(page)
    assert client_states(page)[-1] in ("closed", "failed") and len(client_states(page)) == 1
    snapshot(page, console, "session-ended", [SESSION_ENDED])
    assert "Traceback" not in service.log_tail(10_000)


def test_log_out_everywhere_on_another_device_is_shown_in_plain_words(
    page: tuple[Page, ConsoleLog], service: Service
) -> None:
    browser_page, console = page
    with server_log_on_failure(service):
        open_page(browser_page, service)
        log_in(browser_page, PASSWORD)
        state = browser_page.get_by_test_id("connection-state")
        expect(state).to_have_text("connected", timeout=15_000)
        # Another device (an HTTP client with a session of its own) logs out everywhere.
        with httpx.Client(base_url=service.base_url) as other_device:
            other_device.post("/login", json={"username": USERNAME, "password": PASSWORD}).raise_for_status()
            started = time.monotonic()
            other_device.post("/logout?everywhere=true", headers={"Origin": service.base_url}).raise_for_status()
        notice = browser_page.get_by_test_id("notice")
        expect(notice).to_have_text("You were logged out from another device.", timeout=ENDED_ELSEWHERE_S * 1000)
        took = time.monotonic() - started
        expect(state).to_have_text(re.compile(r"^(closed|failed)$"), timeout=5_000)
        # Ably dropped the connection for the revoked token; the renewal was refused for good.
        events = browser_page.evaluate("() => window.__authserverPage.events")
        assert any(event["code"] == 40141 for event in events), events
        assert client_states(browser_page)[-1] in ("closed", "failed")
        assert_cleared(browser_page)
        expect(browser_page.get_by_test_id("error")).to_be_hidden()
        snapshot(browser_page, console, "logged-out-elsewhere", [SESSION_ENDED], phone=True)
        # It stays that way: no client comes back.
        browser_page.wait_for_timeout(2_000)
        expect(notice).to_have_text("You were logged out from another device.")
        assert len(client_states(browser_page)) == 1
        print(f"logout everywhere -> the page says so: {took:.2f} s")


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

    # The operator disables the account: its tokens are revoked, the renewal gets 403, which ably-js
    # treats as final, and the page says what happened in one plain sentence.
    started = time.monotonic()
    service.cli("users", "disable", USERNAME)
    notice = page.get_by_test_id("notice")
    expect(notice).to_have_text("Your account was disabled.", timeout=REFUSAL_TIMEOUT_MS)
    took = time.monotonic() - started
    expect(state).to_have_text(re.compile(r"^(closed|failed)$"), timeout=5_000)
    expect(page.get_by_test_id("error")).to_be_hidden()
    expect(page.get_by_test_id("state-reason")).to_be_hidden()
    assert_cleared(page)
    assert client_states(page)[-1] in ("closed", "failed") and len(client_states(page)) == 1
    snapshot(page, console, "disabled", [SESSION_ENDED])
    print(f"disable -> the page says so: {took:.2f} s")


def test_everyone_on_a_channel_sees_each_others_messages_history_and_presence(
    page: tuple[Page, ConsoleLog], browser: Browser, service: Service
) -> None:
    alice, alice_console = page
    service.cli("users", "add", "bob", stdin="bob-password\n")
    with browsing(browser) as (bob, bob_console), server_log_on_failure(service):
        # alice says something before bob arrives: bob reads it from the channel's history on attach
        open_page(alice, service)
        log_in(alice, PASSWORD)
        expect(alice.get_by_test_id("connection-state")).to_have_text("connected", timeout=15_000)
        attach(alice, "chat:together")
        publish(alice, "before you came")
        expect(message_item(alice, "before you came")).to_be_visible(timeout=5_000)

        open_page(bob, service)
        log_in(bob, "bob-password", username="bob")
        expect(bob.get_by_test_id("connection-state")).to_have_text("connected", timeout=15_000)
        attach(bob, "chat:together")
        expect(message_item(bob, "before you came")).to_have_attribute("data-client-id", USERNAME, timeout=5_000)

        for person in (alice, bob):
            present = person.get_by_test_id("presence-list")
            for name in (USERNAME, "bob"):
                expect(present.get_by_text(name, exact=True)).to_be_visible(timeout=10_000)
        for sender, receiver, name in ((bob, alice, "bob"), (alice, bob, USERNAME)):
            text = f"hello from {name}"
            publish(sender, text)
            expect(message_item(receiver, text)).to_have_attribute("data-client-id", name, timeout=5_000)
        expect(message_item(bob, "before you came")).to_have_count(1)  # history and live: once each
        assert_clean_console(alice, alice_console)
        assert_clean_console(bob, bob_console)


def test_short_tokens_renew_and_the_timeline_tells_how_by_keyboard_alone(
    page: tuple[Page, ConsoleLog], short_token_service: Service
) -> None:
    browser_page, console = page
    with server_log_on_failure(short_token_service):
        run_keyboard_and_short_token_scenario(browser_page, console, short_token_service)


def run_keyboard_and_short_token_scenario(page: Page, console: ConsoleLog, service: Service) -> None:
    open_page(page, service)
    # Demo login is on here: the page says so, and what to type.
    expect(page.get_by_test_id("demo-hint")).to_contain_text("Demo login is on")
    snapshot(page, console, "logged-out-demo")

    # A registered account's name is not free for demo login: the page says why in the service's words
    # (not "Wrong username or password."), so a newcomer who ran `users add alice` is not left guessing.
    log_in(page, "not alice's password")
    expect(page.get_by_test_id("error")).to_contain_text("it is a registered account, so demo login")
    open_page(page, service)  # a fresh page for the keyboard-only part

    # Keyboard only: Tab to each field, Enter to submit.
    page.locator("body").focus()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type("visitor")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type("anything at all")
    page.keyboard.press("Enter")
    state = page.get_by_test_id("connection-state")
    expect(state).to_have_text("connected", timeout=15_000)
    expect(page.get_by_test_id("identity-source")).to_have_text("(demo login, role demo)")
    page.get_by_label("Channel name").focus()
    page.keyboard.press("Control+a")
    page.keyboard.type("chat:keys")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("channel-state")).to_have_text("chat:keys (attached)", timeout=10_000)
    page.keyboard.press("Tab")
    expect(page.get_by_test_id("attach-button")).to_be_focused()
    page.get_by_label("Message", exact=True).focus()
    page.keyboard.type("typed, not clicked")
    page.keyboard.press("Enter")
    expect(message_item(page, "typed, not clicked")).to_be_visible(timeout=5_000)

    # Tokens shorter than Ably's 30 s AUTH lead: at expiry the connection drops with 40142 and comes
    # back with a new token (a sandbox that still prompts early renews them in band instead). Either
    # way each renewal is drawn as what it was: "reconnect" exactly when the connection had dropped.
    expect(page.get_by_test_id("renewal-count")).to_have_text(
        re.compile(r"^[2-9]\d*$"), timeout=(3 * SHORT_TOKEN_TTL + 20) * 1000
    )
    expect(state).to_have_text("connected", timeout=10_000)
    tokens: list[dict[str, Any]] = page.evaluate("() => window.__authserverPage.tokens")
    events: list[dict[str, Any]] = page.evaluate("() => window.__authserverPage.events")
    for token in tokens[1:]:
        dropped = any(
            # receivedAt, not issued: the service back-dates iat (TOKEN_IAT_MARGIN) against clock skew
            e["current"] == "disconnected" and previous["receivedAt"] <= e["at"] <= token["receivedAt"]
            for e in events
            for previous in tokens
            if previous["n"] == token["n"] - 1
        )
        assert token["kind"] == ("reconnect" if dropped else "in-band"), (token, events)
    # The timeline draws each renewal as what it was; renewals go on meanwhile, so the marks and the
    # model are compared at one moment, in the page, until the drawing has caught up.
    page.wait_for_function(
        """() => {
            const tokens = window.__authserverPage.tokens;
            const marks = (kind) => document.querySelectorAll(`[data-testid="timeline"] circle.mark-${kind}`).length;
            const count = (kind) => tokens.filter((t) => t.kind === kind).length;
            return marks('reconnect') === count('reconnect') && marks('in-band') === count('in-band');
        }""",
        timeout=5_000,
    )
    reconnects = sum(t["kind"] == "reconnect" for t in tokens)
    if reconnects:
        log = page.get_by_test_id("event-log")
        expect(log.locator("li", has_text="40142").first).to_be_visible()
    snapshot(page, console, "short-tokens", [WRONG_PASSWORD], phone=True)


def test_the_page_follows_role_changes_and_remembers_each_users_last_attached_channel(
    page: tuple[Page, ConsoleLog], service: Service
) -> None:
    browser_page, console = page
    service.cli("users", "add", "carol", stdin="carol-password\n")
    try:
        with server_log_on_failure(service):
            run_role_and_memory_scenario(browser_page, console, service)
    finally:
        service.cli("users", "set-role", USERNAME, "user")


def run_role_and_memory_scenario(page: Page, console: ConsoleLog, service: Service) -> None:
    open_page(page, service)
    log_in(page, PASSWORD)
    state = page.get_by_test_id("connection-state")
    expect(state).to_have_text("connected", timeout=15_000)
    expect(page.get_by_test_id("identity-source")).to_have_text("(account, role user)")

    # A channel is remembered once it attached; one whose attach is refused is not, so a reload goes
    # back to the last channel that worked instead of retrying the refused one.
    attach(page, "chat:kept")
    page.get_by_label("Channel name").fill("secret:plans")
    page.get_by_test_id("attach-button").click()
    expect(page.get_by_test_id("channel-error")).to_contain_text("(40160)", timeout=10_000)
    page.reload()
    expect(state).to_have_text("connected", timeout=15_000)
    expect(page.get_by_test_id("channel-state")).to_have_text("chat:kept (attached)", timeout=10_000)

    # Publish follows what the service says: not on announcements for role user...
    attach(page, "announcements")
    publish_button = page.get_by_test_id("publish-button")
    expect(publish_button).to_be_disabled()
    # ... and the operator makes alice an admin: her tokens are revoked with a re-auth margin, the
    # page's client renews, and the page shows the new role and what it now allows, without a reload.
    service.cli("users", "set-role", USERNAME, "admin")
    identity = page.get_by_test_id("identity-source")
    expect(identity).to_have_text("(account, role admin)", timeout=REFUSAL_TIMEOUT_MS)
    expect(page.get_by_test_id("channel-ops")).to_have_text("everything (*)", timeout=5_000)
    expect(publish_button).to_be_enabled()
    expect(page.get_by_test_id("publish-hint")).to_be_hidden()
    publish(page, "now I may")
    expect(message_item(page, "now I may")).to_be_visible(timeout=5_000)
    expect(page.get_by_test_id("event-log").locator("li", has_text="role changed from user to admin")).to_have_count(1)
    expect(state).to_have_text("connected")
    snapshot(page, console, "role-changed", [SESSION_ENDED])

    # Another user of the same browser has a memory of their own: carol does not get alice's channel.
    page.get_by_role("button", name="Log out").click()
    expect(state).to_have_text("closed", timeout=10_000)
    log_in(page, "carol-password", username="carol")
    expect(state).to_have_text("connected", timeout=15_000)
    expect(page.get_by_label("Channel name")).to_have_value("chat:lobby")
    page.reload()
    expect(state).to_have_text("connected", timeout=15_000)
    page.wait_for_timeout(1_000)
    expect(page.get_by_test_id("channel-state")).to_have_text("none")
    stored = page.evaluate("() => ({...window.localStorage})")
    ours = {key: value for key, value in stored.items() if key.startswith("authserver.")}
    assert ours == {"authserver.channel:alice": "announcements"}, stored  # nothing for carol yet
