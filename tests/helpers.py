"""Helpers shared by the test modules (importable as ``helpers``; fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import uvicorn

API_KEY = "appId.keyId:not-a-real-secret-0123456789-abcdefghijklm"
KEY_NAME, KEY_SECRET = API_KEY.split(":")
SESSION_SECRET = "test-session-secret-0123456789-abcdefghij"


class FakeClock:
    """Seconds since the epoch, moved on by the test."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def bound_socket() -> socket.socket:
    """A socket bound to a free port of 127.0.0.1 (``getsockname()[1]``), for :func:`running_server`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def running_server(
    app: Any,
    *,
    port: int = 0,
    lifespan: Literal["auto", "on", "off"] = "on",
    timeout: float = 10.0,
    sock: socket.socket | None = None,
) -> Iterator[str]:
    """Run an ASGI app under a real uvicorn on 127.0.0.1 (``port`` 0: a free one; or on ``sock``, bound
    beforehand by :func:`bound_socket`, when the app must know its URL) in a thread; yield its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan=lifespan,
        access_log=False,
        timeout_keep_alive=60,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock] if sock else None}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        assert not thread.is_alive(), f"uvicorn did not stop within {timeout} s"


AUTHSERVER = str(Path(sys.executable).with_name("authserver"))

# What `authserver serve` and `authserver sandbox` log (INFO) once their sockets are bound.
SERVE_ANNOUNCEMENT = re.compile(r"authserver \S+ on (?P<url>http://\S+) \(signing key \S+, Ably: (?P<ably>[^)]+)\)")
SANDBOX_ANNOUNCEMENT = re.compile(r"Ably sandbox on (?P<url>http://\S+) for key\(s\) ")


@dataclass(frozen=True)
class Announced:
    """A running ``authserver serve`` or ``authserver sandbox`` and what it announced."""

    process: subprocess.Popen[bytes]
    #: Where it listens, e.g. ``http://127.0.0.1:41234``.
    url: str
    #: ``serve`` only: where it says Ably is (the embedded sandbox in development mode, or "real Ably").
    ably_endpoint: str | None

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        assert port is not None
        return port


def _accepts_connections(url: str) -> bool:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=1).close()
    except OSError:
        return False
    return True


def _limit_descriptors(count: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))


@contextmanager
def running_authserver(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log: Path,
    timeout: float = 20.0,
    max_descriptors: int | None = None,
    program: str | Path | None = None,
) -> Iterator[Announced]:
    """Run ``authserver ARGS`` (``serve`` or ``sandbox``) until the block ends, its output appended to ``log``.

    Give it port 0 (``AUTHSERVER_PORT``, ``AUTHSERVER_SANDBOX_PORT`` or ``--port``): the ports it bound
    are read from its start-up line, so no other process can take them in between. Yields once every
    announced ``http://`` address accepts connections; fails if that takes longer than ``timeout``
    seconds or the process exits first. ``program``: another ``authserver`` than the checkout's venv's.
    """
    pattern = SERVE_ANNOUNCEMENT if args[0] == "serve" else SANDBOX_ANNOUNCEMENT
    start = log.stat().st_size if log.exists() else 0
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(program or AUTHSERVER), *args],
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=None if max_descriptors is None else lambda: _limit_descriptors(max_descriptors),
        )
    try:
        deadline = time.monotonic() + timeout
        announced: Announced | None = None
        while True:
            if announced is None:
                with log.open("rb") as written:
                    written.seek(start)
                    found = pattern.search(written.read().decode("utf-8", errors="replace"))
                if found is not None:
                    ably = found.groupdict().get("ably")
                    announced = Announced(process, found["url"], ably)
            if announced is not None:
                urls = [announced.url, *([announced.ably_endpoint] if announced.ably_endpoint else [])]
                if all(_accepts_connections(url) for url in urls if url.startswith("http://")):
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_bytes()[start:].decode("utf-8", errors="replace")[-4000:]
                if process.returncode is not None:
                    raise AssertionError(f"authserver {args[0]} exited with {process.returncode}:\n{tail}")
                raise AssertionError(f"authserver {args[0]} was not listening within {timeout} s:\n{tail}")
            time.sleep(0.05)
        yield announced
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


async def until(check: Callable[[], object], *, timeout: float, what: str) -> None:
    """Return once ``check()`` is true; fail the test naming ``what`` after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def live_connections(sandbox: Any, client_id: str) -> int:
    """How many live (transport attached) connections of ``client_id`` the sandbox (Ably's side) holds."""
    return sum(c.identity.client_id == client_id and c.transport is not None for c in list(sandbox.connections))


def all_revoked(sandbox: Any, client_id: str) -> bool:
    """Whether the sandbox holds connections of ``client_id`` and every one has a revoked token (it sent 40141)."""
    held = [c for c in list(sandbox.connections) if c.identity.client_id == client_id]
    return bool(held) and all(sandbox.revocations.revoked(c.grant, now_ms=sandbox.now_ms()) for c in held)


if TYPE_CHECKING:
    from playwright.sync_api import Page


def log_in_at_the_provider(page: Page, name: str) -> None:
    """The test provider's own login page (any password), then its consent page (tests/oidc/provider.mjs,
    scripts/idp.mjs: the same oidc-provider interactions)."""
    from playwright.sync_api import expect

    expect(page.locator("input[name=login]")).to_be_visible(timeout=15_000)
    page.fill("input[name=login]", name)
    page.fill("input[name=password]", "any password")
    page.get_by_role("button", name="Sign-in").click()
    consent = page.get_by_role("button", name="Continue")
    consent.wait_for(timeout=15_000)
    consent.click()
