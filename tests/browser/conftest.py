"""A real ``authserver serve`` (with its embedded sandbox) and a real headless Chromium.

Skips with a reason when Chromium or the npm copy of ably-js is missing; the set-up script installs
both (apt ``chromium`` and the locked npm packages), so in CI these tests run.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from helpers import AUTHSERVER, running_authserver

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ABLY_JS = REPO / ".cache" / "node" / "node_modules" / "ably"
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Seconds. Ably sends AUTH about 30 s before expiry and nothing to shorter tokens (spec 8.1), so a
# token a little over 30 s renews in band soon after it is issued (about 3 s; a sandbox that prompts
# at min(30 s, ttl / 2) takes 16.5 s: slower, same path). A short one shows the reconnect path.
TOKEN_TTL = 33
SHORT_TOKEN_TTL = 6
USERNAME = "alice"
PASSWORD = "alice-password"
STARTUP_TIMEOUT = 20.0


@dataclass
class Service:
    """A running ``authserver serve`` and where its output goes."""

    base_url: str
    log_path: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    workdir: Path

    def cli(self, *args: str, stdin: str = "") -> None:
        """Run ``authserver ARGS`` against this service's database, as an operator would."""
        done = subprocess.run(
            [AUTHSERVER, *args], input=stdin.encode(), env=self.env, cwd=self.workdir, capture_output=True, timeout=30
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class ConsoleLog:
    """Everything the page said on its console, plus uncaught errors."""

    messages: list[tuple[str, str, str]] = field(default_factory=list)  # (type, text, url)
    page_errors: list[str] = field(default_factory=list)

    def record(self, message: ConsoleMessage) -> None:
        self.messages.append((message.type, message.text, message.location.get("url", "")))

    def problems(self, answered: Collection[tuple[str, int | str]] = ()) -> list[str]:
        """Console errors, CSP reports and uncaught page errors.

        ``answered`` lists (path, status) pairs of HTTP answers the scenario provokes on purpose (a
        wrong password's 401 from /login, the 401/403 /auth gives Ably when a session has ended or an
        account is disabled, or a request the test itself aborts: ``net::ERR_FAILED``): Chromium logs
        each as "Failed to load resource", which no page can prevent. Nothing else is excused: no
        console.error of the page, no CSP violation, no other failed load.
        """
        found = [f"pageerror: {text}" for text in self.page_errors]
        for kind, text, url in self.messages:
            csp = "Content Security Policy" in text or "Refused to" in text
            if kind != "error" and not csp:
                continue
            path = url.split("?")[0]
            provoked = "Failed to load resource" in text and any(
                path.endswith(p) and (f"status of {status}" if isinstance(status, int) else status) in text
                for p, status in answered
            )
            if provoked and not csp:
                continue
            found.append(f"{kind}: {text} ({url})")
        return found

    def mentions(self, secret: str) -> bool:
        """Whether anything on the console contains ``secret`` (a token must never be logged)."""
        return any(secret in text for _, text, _ in self.messages) or any(secret in e for e in self.page_errors)


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (the set-up script installs Debian's chromium with apt)")
    return CHROMIUM


@pytest.fixture(scope="session")
def ably_js_dir() -> Path:
    if not (ABLY_JS / "build" / "ably.min.js").is_file():
        pytest.skip("ably-js is not installed under .cache/node (scripts/setup --test installs it)")
    return ABLY_JS


@contextmanager
def serving(
    workdir: Path, ably_js_dir: Path, *, token_ttl: int, demo_login: bool, extra: dict[str, str] | None = None
) -> Iterator[Service]:
    """``authserver serve`` on ports it picks, development mode (embedded sandbox), one user: alice;
    ``extra``: more settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ABLY_", "AUTHSERVER_", "TOKEN_", "SESSION_", "DATABASE_"))
    }
    env.update(
        AUTHSERVER_ENV="development",
        # port 0: both servers take free ports and announce them (no window for another process)
        AUTHSERVER_PORT="0",
        AUTHSERVER_SANDBOX_PORT="0",
        TOKEN_TTL=str(token_ttl),
        ABLY_JS="local",
        ABLY_JS_PATH=str(ably_js_dir),
        AUTHSERVER_DEMO_LOGIN="true" if demo_login else "false",
        DATABASE_URL=f"sqlite:///{workdir / 'users.db'}",
        AUTHSERVER_LOG_LEVEL="info",
    )
    env.update(extra or {})
    # cwd=workdir: no .env of the developer's checkout leaks into the test.
    added = subprocess.run(
        [AUTHSERVER, "users", "add", USERNAME, "--role", "user"],
        input=f"{PASSWORD}\n".encode(),
        env=env,
        cwd=workdir,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert added.returncode == 0, f"users add failed: {added.stderr.decode(errors='replace')}"

    log_path = workdir / "serve.log"
    with running_authserver(
        ["serve", "--host", "127.0.0.1"], env=env, cwd=workdir, log=log_path, timeout=STARTUP_TIMEOUT
    ) as serve:
        running = Service(serve.url, log_path, serve.process, env, workdir)
        _wait_healthy(running)
        yield running


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, ably_js_dir: Path) -> Iterator[Service]:
    """Tokens of TOKEN_TTL (a little over Ably's 30 s AUTH lead: renewed in band), no demo login."""
    with serving(tmp_path_factory.mktemp("authserver"), ably_js_dir, token_ttl=TOKEN_TTL, demo_login=False) as svc:
        yield svc


@pytest.fixture(scope="module")
def short_token_service(tmp_path_factory: pytest.TempPathFactory, ably_js_dir: Path) -> Iterator[Service]:
    """Tokens of SHORT_TOKEN_TTL and demo login on: Ably sends no AUTH for tokens under 30 s, so the
    connection drops at expiry (DISCONNECTED 40142) and comes back with a new token."""
    workdir = tmp_path_factory.mktemp("authserver-short")
    with serving(workdir, ably_js_dir, token_ttl=SHORT_TOKEN_TTL, demo_login=True) as svc:
        yield svc


def _wait_healthy(service: Service) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            pytest.fail(f"authserver serve exited with {service.process.returncode}:\n{service.log_tail()}")
        try:
            if httpx.get(f"{service.base_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"authserver serve not healthy after {STARTUP_TIMEOUT:.0f} s:\n{service.log_tail()}")


@pytest.fixture(scope="module")
def browser(chromium_path: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium_path), headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


# Runs before any page script: counts every Ably.Realtime the page creates (independently of the
# page's own bookkeeping) and records CSP violations as the browser reports them.
INIT_SCRIPT = """
(() => {
  const clients = [];
  window.__testRealtimeClients = clients;
  window.__cspViolations = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
  });
  let ably;
  Object.defineProperty(window, 'Ably', {
    configurable: true,
    get() { return ably; },
    set(value) {
      const Original = value.Realtime;
      class Counted extends Original {
        constructor(...args) { super(...args); clients.push(this); }
      }
      ably = new Proxy(value, {
        get(target, name, receiver) { return name === 'Realtime' ? Counted : Reflect.get(target, name, receiver); },
      });
    },
  });
})();
"""


@contextmanager
def browsing(browser: Browser) -> Iterator[tuple[Page, ConsoleLog]]:
    """A page in a browser context of its own (its own cookies: another person), watched."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    console = ConsoleLog()
    opened = context.new_page()
    opened.add_init_script(INIT_SCRIPT)
    opened.on("console", console.record)
    opened.on("pageerror", lambda error: console.page_errors.append(str(error)))
    try:
        yield opened, console
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, ConsoleLog]]:
    with browsing(browser) as opened:
        yield opened
