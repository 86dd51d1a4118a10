"""Slow and idle clients against a real ``authserver serve`` (real sockets, a real descriptor limit):
header and body read timeouts, the connection cap, and the header size limit (authserver.connections)."""

from __future__ import annotations

import os
import pickle
import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from authserver.server.guard import ConnectionGuard, ConnectionLimits, limit_connections

from helpers import API_KEY, SESSION_SECRET, Announced, running_authserver


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "ABLY_API_KEY": API_KEY,
        "SESSION_SECRET": SESSION_SECRET,
        "DATABASE_URL": f"sqlite:///{tmp_path}/authserver.db",
        "AUTHSERVER_PORT": "0",
        **extra,
    }


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Announced]:
    """serve under ``ulimit -n 256`` (so at most 128 connections), 2 s to send headers or a body."""
    env = _env(tmp_path, AUTHSERVER_HEADER_TIMEOUT="2", AUTHSERVER_BODY_TIMEOUT="2")
    with running_authserver(["serve"], env=env, cwd=tmp_path, log=tmp_path / "serve.log", max_descriptors=256) as s:
        yield s


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _wait_all_closed(socks: list[socket.socket], timeout: float) -> list[socket.socket]:
    """The sockets still open after ``timeout`` seconds (polled, not slept)."""
    pending = set(socks)
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        while pending and time.monotonic() < deadline:
            for key, _ in selector.select(0.5):
                sock = key.fileobj  # type: ignore[assignment]
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:  # EOF or reset: closed by the server (a 431 body comes before its EOF)
                    selector.unregister(sock)
                    pending.discard(sock)
    return list(pending)


def test_idle_and_half_sent_connections_neither_stop_healthz_nor_stay_open(limited: Announced) -> None:
    socks: list[socket.socket] = []
    try:
        for _ in range(200):  # idle: connected, nothing sent
            socks.append(_connect(limited.port))
        for i in range(50):  # half-sent: a request line and part of the headers, then nothing
            sock = _connect(limited.port)
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow-{i}: ".encode())
            socks.append(sock)
        # 250 connections against a cap of 128 (256 descriptors less 128): the oldest idle ones make
        # room, and the health check is answered at once rather than refused or queued.
        response = httpx.get(f"{limited.url}/healthz", timeout=5)
        assert response.status_code == 200
        # Every idle or half-sent connection is closed by the server: within the 2 s header timeout,
        # or earlier when it was evicted. Generous bound: the machine is shared.
        still_open = _wait_all_closed(socks, timeout=30)
        assert still_open == []
        assert httpx.get(f"{limited.url}/healthz", timeout=5).status_code == 200
        metrics = httpx.get(f"{limited.url}/metrics", timeout=5).text
        assert 'authserver_connections_dropped_total{reason="evicted"}' in metrics
        assert 'authserver_connections_dropped_total{reason="header_timeout"}' in metrics
    finally:
        for sock in socks:
            sock.close()


def test_a_body_that_never_finishes_is_cut_off_and_logged_as_a_warning(limited: Announced, tmp_path: Path) -> None:
    with _connect(limited.port) as sock:
        sock.sendall(
            b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"username":'
        )
        assert _wait_all_closed([sock], timeout=30) == []
    log = tmp_path / "serve.log"
    deadline = time.monotonic() + 10
    while "disconnected mid-body" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = log.read_text().splitlines()
    assert any("WARNING" in line and "client disconnected mid-body on POST /login" in line for line in lines)
    assert not any(" ERROR " in line for line in lines)


def test_clients_hanging_up_mid_body_cannot_flood_the_log(limited: Announced, tmp_path: Path) -> None:
    for _ in range(30):
        with _connect(limited.port) as sock:
            sock.sendall(
                b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"username":'
            )  # and hang up
    assert httpx.get(f"{limited.url}/healthz", timeout=5).status_code == 200
    metrics = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the service has seen all 30 hang-ups
        metrics = httpx.get(f"{limited.url}/metrics", timeout=5).text
        if 'route="/login",status="400"} 30.0' in metrics:
            break
        time.sleep(0.2)
    assert 'authserver_request_duration_seconds_count{method="POST",route="/login",status="400"} 30.0' in metrics
    lines = (tmp_path / "serve.log").read_text().splitlines()
    logged = [line for line in lines if "disconnected mid-body" in line]
    assert 1 <= len(logged) <= 5
    assert all(" WARNING " in line for line in logged)
    assert not any(" ERROR " in line for line in lines)


def test_a_kept_alive_connection_is_not_cut_by_the_header_timeout(limited: Announced) -> None:
    """Between requests the keep-alive timeout applies (75 s), not the 2 s header timeout."""
    with httpx.Client(base_url=limited.url, timeout=5) as client:
        first = client.get("/healthz")
        time.sleep(3)  # NOTE: longer than the header timeout on purpose: the connection must survive it
        second = client.get("/healthz")
    assert first.status_code == second.status_code == 200
    assert first.extensions["network_stream"] is second.extensions["network_stream"]


def test_oversized_headers_are_refused_with_431_and_closed(limited: Announced) -> None:
    for chunks in ([b"a" * 20_000], [b"a" * 10_000, b"a" * 10_000]):  # in one read, and across reads
        with _connect(limited.port) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
            for chunk in chunks:
                sock.sendall(chunk)
            sock.sendall(b"\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert b"cache-control: private, no-cache, no-store, must-revalidate" in answer
        assert b'"statusCode":431' in answer
    # Just under the limit is fine.
    response = httpx.get(f"{limited.url}/healthz", headers={"X-Big": "a" * 15_000}, timeout=5)
    assert response.status_code == 200


def test_malformed_requests_get_an_ably_400_and_a_few_log_lines_only(limited: Announced, tmp_path: Path) -> None:
    for _ in range(30):
        with _connect(limited.port) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert b"cache-control: private, no-cache, no-store, must-revalidate" in answer
        assert b'"statusCode":400' in answer
    assert httpx.get(f"{limited.url}/healthz", timeout=5).status_code == 200
    logged = [line for line in (tmp_path / "serve.log").read_text().splitlines() if "Invalid HTTP request" in line]
    assert 1 <= len(logged) <= 5


def _read_answers(sock: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` HTTP/1.1 answers (head, body) read from ``sock``, framed by their Content-Length."""
    data = b""
    answers: list[tuple[bytes, bytes]] = []
    while len(answers) < count:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            head = data[:end]
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(data) >= end + 4 + length:
                answers.append((head, data[end + 4 : end + 4 + length]))
                data = data[end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(answers)} answers"
        data += chunk
    return answers


def test_a_head_request_gets_its_head_and_the_kept_alive_connection_goes_on(limited: Announced) -> None:
    """The status line and headers wait for the body's first write (one send, not two): an answer with
    no body to write (HEAD) must still go out at once, and the next request on the connection too."""
    with _connect(limited.port) as sock:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            assert chunk, "closed before the head of a HEAD answer"
            head += chunk
        assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")  # and no body after it
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        [(second, body)] = _read_answers(sock, 1)
    assert second.startswith(b"HTTP/1.1 200 ")
    assert b'"status":"ok"' in body


def test_pipelined_requests_are_answered_whole_and_in_order(limited: Announced) -> None:
    with _connect(limited.port) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
            b"GET /auth HTTP/1.1\r\nHost: localhost\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        answers = _read_answers(sock, 3)
    assert [head.split(b"\r\n")[0] for head, _ in answers] == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 401 Unauthorized",
        b"HTTP/1.1 200 OK",
    ]
    assert b'"code":40101' in answers[1][1]


def test_a_client_expecting_100_continue_gets_it_before_sending_the_body(limited: Announced) -> None:
    body = b'{"username":"nobody","password":"wrong"}'
    with _connect(limited.port) as sock:
        sock.sendall(
            b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = sock.recv(65536)
            assert chunk, "closed before 100 Continue"
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        rest = interim.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n")
        while b"\r\n\r\n" not in rest:
            rest += sock.recv(65536)
    assert rest.startswith(b"HTTP/1.1 401 ")


def test_the_limits_travel_with_a_uvicorn_config_to_worker_processes() -> None:
    """uvicorn's workers get the config pickled (spawn): the protocol goes by name, the limits as data,
    and each process builds its own guard."""
    config = uvicorn.Config("authserver.app:create_app", factory=True)
    limits = ConnectionLimits(header_timeout=3, body_timeout=4, max_connections=100, max_header_bytes=4096)
    limit_connections(config, limits)
    copy = pickle.loads(pickle.dumps(config))  # noqa: S301 - our own object
    assert copy.http == "authserver.server.guard:GuardedProtocol"
    assert copy.authserver_connection_limits == limits
    guard = ConnectionGuard.of(copy)
    assert guard.cap == 100 and guard is ConnectionGuard.of(copy) and guard is not ConnectionGuard.of(config)


def test_a_websocket_upgrade_reaches_the_app_and_is_refused_there(limited: Announced) -> None:
    """The token service has no websocket route: an upgrade, on a new or a kept-alive connection, gets
    the app's refusal (403), not the protocol's "invalid HTTP request" (the upgrade starts no response
    cycle for the held response head to wrap)."""
    upgrade = (
        b"GET /auth HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    for kept_alive in (False, True):
        with _connect(limited.port) as sock:
            if kept_alive:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                _read_answers(sock, 1)
            sock.sendall(upgrade)
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                assert chunk, "closed without an answer"
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 403 "), answer


def test_a_request_that_stalls_on_a_kept_alive_connection_is_cut_off(limited: Announced) -> None:
    """The timers are armed only when a read leaves a request unfinished: after a first request
    answered whole, a second one stalled in its headers, or whose body never begins, is still cut off
    by the 2 s timeouts (long before the 75 s keep-alive timeout)."""
    stalls = [
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ",
        b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n",
    ]
    socks: list[socket.socket] = []
    try:
        for stall in stalls:
            sock = _connect(limited.port)
            socks.append(sock)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            [(head, _)] = _read_answers(sock, 1)
            assert head.startswith(b"HTTP/1.1 200 ")
            sock.sendall(stall)
        assert _wait_all_closed(socks, timeout=30) == []
    finally:
        for sock in socks:
            sock.close()


def test_a_body_that_never_begins_is_cut_off(limited: Announced) -> None:
    with _connect(limited.port) as sock:
        sock.sendall(
            b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
        )
        assert _wait_all_closed([sock], timeout=30) == []
