"""Admission control against a real ``authserver serve``: past ``AUTHSERVER_MAX_IN_FLIGHT`` requests in
flight, a token request is answered 503 at once (Ably's shape, ``Retry-After``), probes still are
served, and the real ably-js client, refused during the storm, connects once it passes.

A request is in flight once the whole of it is in and until its answer is sent: its handler is ready
to run or running. The storm is real and needs no timing: the bound is 1, and logins (never refused
by admission) are held by a real database lock, this test's write transaction on the service's
SQLite file: each waits in its handler to write its session. Requests still sending their body hold
no place (they would let a client that never finishes its bodies fill the bound for nothing)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import API_KEY, AUTHSERVER, SESSION_SECRET, running_authserver

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
NODE_MODULES = ROOT / ".cache" / "node" / "node_modules"
COOKIE = "authserver_session"
HOLDER = {"username": "holder", "password": "holder-password-0123"}


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "ABLY_API_KEY": API_KEY,
        "SESSION_SECRET": SESSION_SECRET,
        "DATABASE_URL": f"sqlite:///{tmp_path}/authserver.db",
        "AUTHSERVER_PORT": "0",
        "AUTHSERVER_MAX_IN_FLIGHT": "1",
        "AUTHSERVER_BODY_TIMEOUT": "60",
        **extra,
    }


@dataclass(frozen=True)
class Bounded:
    url: str
    port: int
    database: Path
    ably_endpoint: str | None


@contextmanager
def serving(tmp_path: Path, *, development: bool = False, **extra: str) -> Iterator[Bounded]:
    """``serve`` with the account the storm logs in with (in development mode any name logs in, and
    the embedded sandbox is Ably)."""
    env = _env(tmp_path, **extra)
    if development:
        del env["ABLY_API_KEY"], env["SESSION_SECRET"]
        env |= {"AUTHSERVER_ENV": "development", "AUTHSERVER_SANDBOX_PORT": "0"}
    else:
        add = [AUTHSERVER, "users", "add", HOLDER["username"]]
        done = subprocess.run(add, input=HOLDER["password"] + "\n", text=True, env=env, cwd=tmp_path, timeout=60)
        assert done.returncode == 0
    with running_authserver(["serve"], env=env, cwd=tmp_path, log=tmp_path / "serve.log") as serve:
        yield Bounded(serve.url, serve.port, tmp_path / "authserver.db", serve.ably_endpoint)


@pytest.fixture
def bounded(tmp_path: Path) -> Iterator[Bounded]:
    """serve with room for one request in flight."""
    with serving(tmp_path) as served:
        yield served


@contextmanager
def storm(server: Bounded, waiting: int = 2) -> Iterator[None]:
    """The bound held full while the block runs, by handlers that really wait: this test holds SQLite's
    write lock, and ``waiting`` logins at a time (2: the most one address may have in flight) wait in
    their handler to write their session (each gives up after the database's busy timeout, answered
    503, and its place is taken by the next)."""
    lock = sqlite3.connect(server.database, isolation_level=None, timeout=30)
    lock.execute("BEGIN IMMEDIATE")
    calm = threading.Event()

    def log_in_until_calm() -> list[int]:
        statuses = []
        while not calm.is_set():
            statuses.append(httpx.post(f"{server.url}/login", json=HOLDER, timeout=60).status_code)
        return statuses

    with ThreadPoolExecutor(waiting) as pool:
        loops = [pool.submit(log_in_until_calm) for _ in range(waiting)]
        try:
            yield
        finally:
            calm.set()
            lock.execute("ROLLBACK")
            lock.close()
            statuses = [status for loop in loops for status in loop.result()]
    # 503 while the lock was held (the database is busy), 200 once it was released
    assert set(statuses) <= {200, 503} and 200 in statuses, statuses


@contextmanager
def bodies_pending(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` ``POST /token`` requests whose headers are in and whose body never comes: each is
    answered ``100 Continue`` (its handler has started reading the body) before the block runs."""
    with ExitStack() as stack:
        held = []
        for _ in range(count):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
            sock.sendall(
                b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                b"Expect: 100-continue\r\nContent-Length: 22\r\n\r\n"
            )
            assert sock.recv(65536).startswith(b"HTTP/1.1 100 ")
            held.append(sock)
        yield held


def _first(url: str, status: int, **kwargs: Any) -> httpx.Response:
    """The first answer of GET ``url`` with ``status`` (polled: the server sees the hold soon, not at once)."""
    deadline = time.monotonic() + 10
    while True:
        response = httpx.get(url, **kwargs)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.02)


def _shed_count(url: str, path: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(f'authserver_requests_shed_total{{path="{path}"}} '):
            return float(line.split()[1])
    return 0.0


def test_over_the_bound_a_token_request_gets_an_ably_503_with_retry_after_and_probes_are_served(
    bounded: Bounded,
) -> None:
    with storm(bounded):
        shed = _first(f"{bounded.url}/auth", 503)
        assert shed.status_code == 503
        assert shed.json() == {
            "error": {
                "message": "too many requests in flight: try again shortly",
                "code": 50300,
                "statusCode": 503,
                "href": "https://help.ably.io/error/50300",
            }
        }
        assert shed.headers["retry-after"] == "1"
        assert shed.headers["x-ably-errorcode"] == "50300"
        assert "no-store" in shed.headers["cache-control"]
        assert httpx.get(f"{bounded.url}/healthz").status_code == 200
        assert httpx.get(f"{bounded.url}/readyz").status_code == 200
        assert httpx.post(f"{bounded.url}/token", data={"grant_type": "x"}).status_code == 503
        assert _shed_count(bounded.url, "/auth") >= 1
        assert _shed_count(bounded.url, "/token") >= 1
    # the storm has passed: the request is admitted (and refused for what it is: no session)
    assert _first(f"{bounded.url}/auth", 401).status_code == 401


def _answers(sock: socket.socket, count: int) -> list[bytes]:
    """The status lines of the next ``count`` answers on ``sock`` (each with a Content-Length body)."""
    data, lines = b"", list[bytes]()
    while len(lines) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {lines}"
            data += chunk
            continue
        head = data[:head_end].split(b"\r\n")
        length = next(int(h.split(b":")[1]) for h in head if h.lower().startswith(b"content-length:"))
        if len(data) < head_end + 4 + length:
            data += sock.recv(65536)
            continue
        lines.append(head[0])
        data = data[head_end + 4 + length :]
    return lines


@pytest.mark.parametrize("target", ["/%61uth", "/%61uth?format=jwt"])
def test_a_token_request_spelled_with_escapes_is_shed_too(bounded: Bounded, target: str) -> None:
    # uvicorn routes /%61uth to /auth: the bound must see it as the token request it is.
    with storm(bounded):
        _first(f"{bounded.url}/auth", 503)
        with socket.create_connection(("127.0.0.1", bounded.port), timeout=10) as raw:
            raw.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            assert raw.recv(65536).startswith(b"HTTP/1.1 503 ")
            raw.sendall(f"GET http://127.0.0.1{target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            assert raw.recv(65536).startswith(b"HTTP/1.1 503 ")


def test_a_shed_request_with_a_body_leaves_its_kept_alive_connection_usable(bounded: Bounded) -> None:
    with storm(bounded):
        assert _first(f"{bounded.url}/auth", 503).status_code == 503
        with socket.create_connection(("127.0.0.1", bounded.port), timeout=10) as sock:
            body = b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
            sock.sendall(
                b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert _answers(sock, 2) == [b"HTTP/1.1 503 Service Unavailable", b"HTTP/1.1 200 OK"]


def test_requests_still_sending_their_body_hold_no_place_in_flight(bounded: Bounded) -> None:
    # Room for one request, and two whose bodies never come: a token request is still admitted.
    with bodies_pending(bounded.port, 2) as held:
        assert httpx.get(f"{bounded.url}/auth").status_code == 401  # admitted: refused for having no session
        assert httpx.post(f"{bounded.url}/token", data={"grant_type": "x"}).status_code == 400
        # a body that comes at last: the request, admitted when its headers came, is answered for what it is
        held[0].sendall(b"grant_type=password&x=1")
        assert held[0].recv(65536).startswith(b"HTTP/1.1 400 ")
    assert _shed_count(bounded.url, "/auth") == 0
    assert _shed_count(bounded.url, "/token") == 0


def test_every_way_a_request_ends_gives_its_place_back(bounded: Bounded) -> None:
    # Room for one request: had any of these kept its place, the token request at the end would be shed.
    with socket.create_connection(("127.0.0.1", bounded.port), timeout=10) as sock:
        # pipelined, three in one write; and HEAD (an answer with no body)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n" * 2 + b"HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        assert _answers(sock, 2) == [b"HTTP/1.1 200 OK"] * 2
        # answered before its body is in (a login that is not JSON or a form), then the body comes
        sock.sendall(b"POST /login HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\n")
        time.sleep(0.2)
        sock.sendall(b"abcd")
    with storm(bounded, waiting=1):  # one login from the storm, one from here: one address's most
        # a client that goes away while its handler waits (here: a login waiting for the database)
        with socket.create_connection(("127.0.0.1", bounded.port), timeout=10) as gone:
            body = json.dumps(HOLDER).encode()
            gone.sendall(b"POST /login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n")
            gone.sendall(b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert _first(f"{bounded.url}/auth", 401).status_code == 401
    for _ in range(3):
        assert httpx.get(f"{bounded.url}/auth").status_code == 401


@contextmanager
def login_storm(server: Bounded, addresses: int) -> Iterator[None]:
    """Two logins at a time from each of ``addresses`` loopback addresses (127.0.0.2 on; two is the
    most one address may have in flight), all waiting in their handlers for this test's write lock
    on the service's database while the block runs: 2 x ``addresses`` requests in flight that ask
    nothing of the event loop."""
    lock = sqlite3.connect(server.database, isolation_level=None, timeout=30)
    lock.execute("BEGIN IMMEDIATE")
    calm = threading.Event()

    def log_in_until_calm(address: str) -> None:
        with httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=60) as client:
            while not calm.is_set():
                client.post(f"{server.url}/login", json=HOLDER)

    sources = [f"127.0.0.{2 + i}" for i in range(addresses)]
    with ThreadPoolExecutor(2 * addresses) as pool:
        loops = [pool.submit(log_in_until_calm, address) for address in sources for _ in range(2)]
        try:
            time.sleep(1.0)  # every login reaches its handler and waits for the lock
            yield
        finally:
            calm.set()
            lock.execute("ROLLBACK")
            lock.close()
            for loop in loops:
                loop.result()


def _session_cookie(server: Bounded) -> dict[str, str]:
    response = httpx.post(f"{server.url}/login", json=HOLDER, timeout=30)
    assert response.status_code == 200
    return {COOKIE: response.cookies[COOKIE]}


def test_requests_waiting_on_the_database_do_not_make_token_requests_shed(tmp_path: Path) -> None:
    # 40 logins in flight (more than the limit starts at), none of them work for the event loop: the
    # limit follows the loop's queue delay, so a renewal is still answered.
    with serving(tmp_path, AUTHSERVER_MAX_IN_FLIGHT="512") as served:
        cookies = _session_cookie(served)
        with login_storm(served, addresses=20):
            for _ in range(5):
                assert httpx.get(f"{served.url}/auth", cookies=cookies, timeout=30).status_code == 200
        assert _shed_count(served.url, "/auth") == 0


def test_with_a_fixed_limit_the_same_waiting_requests_make_token_requests_shed(tmp_path: Path) -> None:
    # The same storm against a fixed limit of 32 (AUTHSERVER_MAX_QUEUE_DELAY_MS=0): the renewal is refused.
    with serving(tmp_path, AUTHSERVER_MAX_IN_FLIGHT="32", AUTHSERVER_MAX_QUEUE_DELAY_MS="0") as served:
        cookies = _session_cookie(served)
        with login_storm(served, addresses=20):
            assert _first(f"{served.url}/auth", 503, cookies=cookies, timeout=30).status_code == 503


def test_a_bound_of_zero_sheds_nothing(tmp_path: Path) -> None:
    with serving(tmp_path, AUTHSERVER_MAX_IN_FLIGHT="0") as served, storm(served):
        time.sleep(0.5)  # the logins reach their handlers (shedding nothing, nothing to wait for)
        assert httpx.get(f"{served.url}/auth").status_code == 401
        assert _shed_count(served.url, "/auth") == 0


@pytest.mark.node
def test_ably_js_refused_with_503_during_a_storm_connects_once_it_passes(tmp_path: Path) -> None:
    """ably-js asks the authUrl, gets 503 (the storm), goes DISCONNECTED and retries on its own; once
    the storm passes it connects, with no help from the test."""
    if NODE is None or not (NODE_MODULES / "ably" / "package.json").is_file():
        if os.environ.get("AUTHSERVER_REQUIRE_E2E") == "1":
            pytest.fail("node or the ably npm package is missing: scripts/setup --test installs both")
        pytest.skip("node or the ably npm package is missing (scripts/setup installs both)")
    with serving(tmp_path, development=True) as serve:
        assert serve.ably_endpoint is not None
        login = httpx.post(f"{serve.url}/login", json={"username": "alice", "password": "anything"})
        login.raise_for_status()
        scenario = {
            "port": int(serve.ably_endpoint.rstrip("/").rsplit(":", 1)[1]),
            "authUrl": f"{serve.url}/auth",
            "cookie": login.cookies[COOKIE],
        }
        node_env = {**os.environ, "ABLY_JS_NODE_MODULES": str(NODE_MODULES), "SCENARIO": json.dumps(scenario)}
        with storm(serve):
            assert _first(f"{serve.url}/auth", 503).status_code == 503
            driver = subprocess.Popen(
                [str(NODE), str(ROOT / "tests" / "node" / "storm.mjs")],
                env=node_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert driver.stdout is not None
            refused = driver.stdout.readline()  # the driver gives up (and prints) within its own time limit
            assert refused.startswith('{"refused"'), refused + driver.communicate(timeout=10)[1][-2000:]
        out, err = driver.communicate(timeout=60)
        shed = _shed_count(serve.url, "/auth")
    result: dict[str, Any] = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    assert result["ok"], f"{result.get('error')}\ntrace: {result.get('trace')}\n{err[-2000:]}"
    assert result["state"] == "connected"
    assert result["clientId"] == "alice"
    refusal = {"current": "disconnected", "code": 80019, "answer": {"code": 50300, "statusCode": 503}}
    assert refusal in result["refusals"]
    assert shed >= 1
