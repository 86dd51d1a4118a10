"""The development stack as the guide starts it: ``scripts/serve --idp --port P`` (the service, its embedded
sandbox on P + 1, the development identity provider on P + 2, the examples on P + 3), with short tokens so
that renewals come every few seconds (``TOKEN_TTL=35``: Ably's AUTH prompt 30 s before expiry).

One stack for the tests of this package (package scope: it stops after the last of them); its database
and the provider's state file are in a temporary folder, never the checkout's ``authserver.db``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

REPO = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
NODE_MODULES = REPO / ".cache" / "node" / "node_modules"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
ARTIFACTS = REPO / "tests" / "artifacts"
DOCS_SCREENSHOTS = REPO / "docs" / "screenshots"
TOKEN_TTL = "35"
RENEWALS = 2
STARTUP_TIMEOUT = 90.0  # the first scripts/setup of a run may install the npm packages


@dataclass
class DevStack:
    """A running ``scripts/serve --idp``."""

    process: subprocess.Popen[bytes]
    port: int
    env: dict[str, str]
    log: Path
    state_file: Path

    @property
    def service(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sandbox_port(self) -> int:
        return self.port + 1

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port + 2}"

    @property
    def examples(self) -> str:
        return f"http://127.0.0.1:{self.port + 3}"

    def run(self, command: str, *, timeout: float = 60, extra_env: dict[str, str] | None = None) -> str:
        """Run a shell command from the docs in the checkout, as a reader would, against this stack."""
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=REPO,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def four_free_ports() -> int:
    """A port P of 127.0.0.1 such that P .. P + 3 are free now (the stack binds them by number)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base > 65000:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(base, base + 4):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise AssertionError("no four consecutive free ports on 127.0.0.1")


def skip_reason() -> str | None:
    if NODE is None:
        return "node is not installed (scripts/setup --test installs it)"
    if not (NODE_MODULES / "oidc-provider" / "package.json").is_file():
        return "oidc-provider is not installed under .cache/node (scripts/setup installs it)"
    return None


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the script (its trap stops the provider and the service), then its process group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


@pytest.fixture(scope="package")
def dev_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("dev-stack")
    port = four_free_ports()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AUTHSERVER_", "ABLY_", "OIDC_", "TOKEN_", "SESSION_", "DATABASE_", "REDIS_"))
    }
    env.update(
        DATABASE_URL=f"sqlite:///{folder / 'authserver.db'}",
        TOKEN_TTL=TOKEN_TTL,
        IDP_STATE_FILE=str(folder / "dev-idp.json"),
        AUTHSERVER_ENV_FILE=str(folder / "none.env"),
    )
    (folder / "none.env").write_text("# the checkout's .env is not read\n", encoding="utf-8")
    log = folder / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(REPO / "scripts" / "serve"), "--idp", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack = DevStack(process, port, env, log, folder / "dev-idp.json")
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not ready(stack):
            assert process.poll() is None, f"scripts/serve --idp exited {process.returncode}:\n{stack.log_tail()}"
            assert time.monotonic() < deadline, f"scripts/serve --idp not ready:\n{stack.log_tail()}"
            time.sleep(0.2)
        yield stack
    finally:
        stop(process)


def ready(stack: DevStack) -> bool:
    try:
        state = json.loads(stack.state_file.read_text(encoding="utf-8"))
        return bool(state["issuer"]) and httpx.get(f"{stack.service}/readyz", timeout=2).status_code == 200
    except (OSError, ValueError, KeyError, httpx.HTTPError):
        return False


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module: Playwright's sync API keeps an event loop running in this thread while it is open,
    which later tests' ``asyncio.run`` would trip over."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (scripts/setup --test installs Debian's chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1000, "height": 760})
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot(page: Page, name: str) -> None:
    """Into tests/artifacts/, and into docs/screenshots/ (the docs show them) when
    UPDATE_DOCS_SCREENSHOTS=1, so that an ordinary run leaves the checkout unchanged."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(DOCS_SCREENSHOTS / f"{name}.png"), full_page=True)


def install_example(folder: Path) -> None:
    """``npm ci`` of an example's own lock, from the npm cache when it holds the packages (the first
    run on a new machine downloads them from the registry)."""
    if (folder / "node_modules" / ".package-lock.json").is_file():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed (scripts/setup --test installs it)")
    done = subprocess.run(
        [npm, "ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def expect_connected_across_renewals(page: Page, client_id: str, message: str) -> None:
    """The example page's status: connected as ``client_id``, its own ``message`` echoed back, then
    RENEWALS token renewals one after another, still connected."""
    expect(page.locator("#state")).to_have_text("connected", timeout=20_000)
    expect(page.locator("#client-id")).to_have_text(client_id)
    expect(page.locator("#message")).to_have_text(f"{client_id}: {message}", timeout=10_000)
    # at least RENEWALS: a slow moment must not let the count step past an exact figure unseen
    page.wait_for_function(
        "(n) => Number(document.querySelector('#renewals').textContent) >= n", arg=RENEWALS, timeout=RENEWALS * 30_000
    )
    expect(page.locator("#state")).to_have_text("connected")
