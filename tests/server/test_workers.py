"""`authserver serve --workers 2` on PostgreSQL and Redis, as a deployment runs it: every worker
refuses a logged-out session at once, the login throttle counts across workers, Redis stopping
degrades to per-process state without an error and recovers, and SIGTERM lets an in-flight request
finish. Which worker answered is read from ``/healthz``'s ``pid`` over one kept-alive connection.

The sessions' memory is set to an hour (AUTHSERVER_SESSION_RECHECK), so only an announcement can
make a worker forget a session it remembered.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from realservers import Postgres, Redis

from conftest import fresh_postgres_url
from helpers import AUTHSERVER, Announced, running_authserver

T = TypeVar("T")
WORKERS = 2
PASSWORD = "correct horse battery"


@dataclass
class Deployment:
    served: Announced
    log: Path
    env: dict[str, str]

    @property
    def url(self) -> str:
        return self.served.url

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def per_worker(url: str, request: Callable[[httpx.Client], T], *, timeout: float = 60.0) -> dict[int, T]:
    """``request`` made once through each worker: new connections until every worker has answered one."""
    results: dict[int, T] = {}
    deadline = time.monotonic() + timeout
    while len(results) < WORKERS:
        assert time.monotonic() < deadline, f"only workers {sorted(results)} answered within {timeout} s"
        with httpx.Client(base_url=url, timeout=10) as client:  # one connection: one worker
            pid = client.get("/healthz").json()["pid"]
            if pid not in results:
                results[pid] = request(client)
    return results


def eventually(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def deployment(postgres: Postgres, redis_server: Redis, tmp_path: Path) -> Iterator[Deployment]:
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "ABLY_API_KEY": "prodApp.prodKey:" + "k" * 43,
        "SESSION_SECRET": "s" * 40,
        "DATABASE_URL": asyncio.run(fresh_postgres_url(postgres)),
        "REDIS_URL": redis_server.url,
        "AUTHSERVER_PORT": "0",
        "AUTHSERVER_SESSION_RECHECK": "3600",
        "AUTHSERVER_LOGIN_FAILURES_PER_ADDRESS": "1000",
    }
    subprocess.run([AUTHSERVER, "db", "upgrade"], env=env, cwd=tmp_path, check=True, capture_output=True)
    added = subprocess.run(
        [AUTHSERVER, "users", "add", "alice"],
        input=f"{PASSWORD}\n",
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
        capture_output=True,
    )
    assert added.returncode == 0, added.stderr
    import redis

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    log = tmp_path / "serve.log"
    with running_authserver(["serve", "--workers", str(WORKERS)], env=env, cwd=tmp_path, log=log, timeout=60) as served:
        deployment = Deployment(served, log, env)
        # every worker up (its lifespan done: pool open, subscribed) before the test begins
        per_worker(served.url, lambda client: client.get("/readyz").status_code)
        yield deployment


def log_in(url: str) -> str:
    response = httpx.post(f"{url}/login", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.cookies["authserver_session"]


def auth_status(cookie: str) -> Callable[[httpx.Client], int]:
    return lambda client: client.get("/auth", headers={"Cookie": f"authserver_session={cookie}"}).status_code


def test_a_logout_through_one_worker_is_refused_by_every_worker(deployment: Deployment) -> None:
    cookie = log_in(deployment.url)
    assert set(per_worker(deployment.url, auth_status(cookie)).values()) == {200}  # every worker remembers it
    with httpx.Client(base_url=deployment.url) as client:
        assert client.post("/logout", headers={"Cookie": f"authserver_session={cookie}"}).status_code == 200
    # why it ended is in the database: every worker gives the same final refusal (403, 40304)
    assert set(per_worker(deployment.url, auth_status(cookie)).values()) == {403}


def test_the_login_throttle_counts_across_workers(deployment: Deployment) -> None:
    failures: set[int] = set()
    for _ in range(10):
        with httpx.Client(base_url=deployment.url) as client:
            failures.add(client.get("/healthz").json()["pid"])
            assert client.post("/login", json={"username": "alice", "password": "guess"}).status_code == 401
    answers = per_worker(
        deployment.url, lambda client: client.post("/login", json={"username": "alice", "password": PASSWORD})
    )
    assert {response.status_code for response in answers.values()} == {429}
    assert {response.json()["error"]["code"] for response in answers.values()} == {42910}


def test_redis_stopping_degrades_without_errors_and_recovers(deployment: Deployment, redis_server: Redis) -> None:
    cookie = log_in(deployment.url)
    assert set(per_worker(deployment.url, auth_status(cookie)).values()) == {200}
    redis_server.stop()
    try:
        # known sessions keep their tokens on every worker; readiness says why not ready
        assert set(per_worker(deployment.url, auth_status(cookie)).values()) == {200}
        readiness = per_worker(deployment.url, lambda client: client.get("/readyz"))
        assert {response.status_code for response in readiness.values()} == {503}
        assert all(r.json()["checks"]["redis"].startswith("Redis redis://") for r in readiness.values())
        # logins still work (local throttle), and nothing answered 500
        with httpx.Client(base_url=deployment.url) as client:
            assert client.post("/login", json={"username": "alice", "password": "guess"}).status_code == 401
        assert eventually(lambda: deployment.log_text().count("is not answering") >= WORKERS)
    finally:
        redis_server.start()  # the same port
    assert eventually(lambda: deployment.log_text().count("answers again") >= WORKERS)
    # ready once every worker listens to announcements again (within a second or so)
    assert eventually(
        lambda: set(per_worker(deployment.url, lambda client: client.get("/readyz").status_code).values()) == {200}
    )
    # shared again: a logout reaches every worker
    assert set(per_worker(deployment.url, auth_status(cookie)).values()) == {200}
    with httpx.Client(base_url=deployment.url) as client:
        client.post("/logout", headers={"Cookie": f"authserver_session={cookie}"})
    assert set(per_worker(deployment.url, auth_status(cookie)).values()) == {403}
    assert " 500 " not in deployment.log_text() and "Traceback" not in deployment.log_text()


def test_sigterm_lets_an_in_flight_request_finish_and_stops_every_worker(deployment: Deployment) -> None:
    host, port = deployment.url.removeprefix("http://").rsplit(":", 1)
    body = b'{"username": "alice", "password": "guess"}'
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        time.sleep(0.2)  # let a worker take the request in before the signal (not a timing assertion)
        deployment.served.process.send_signal(signal.SIGTERM)
        assert eventually(lambda: deployment.log_text().count("Shutting down") >= WORKERS)
        conn.sendall(body[10:])
        answer = conn.recv(65536)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert deployment.served.process.wait(60) == 0
    assert deployment.log_text().count("Finished server process") >= WORKERS


def test_development_mode_runs_one_worker_and_says_so(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "AUTHSERVER_ENV": "development",
        "AUTHSERVER_PORT": "0",
        "AUTHSERVER_SANDBOX_PORT": "0",
        "AUTHSERVER_WORKERS": "3",
    }
    log = tmp_path / "serve.log"
    with running_authserver(["serve"], env=env, cwd=tmp_path, log=log) as served:
        pids = {httpx.get(f"{served.url}/healthz").json()["pid"] for _ in range(5)}
        text = log.read_text()
    assert "development mode (embedded sandbox) runs one worker: --workers/AUTHSERVER_WORKERS=3 ignored" in text
    assert pids == {served.process.pid}


def test_metrics_sum_across_workers(deployment: Deployment) -> None:
    cookie = log_in(deployment.url)
    issued: dict[int, int] = {}
    deadline = time.monotonic() + 60
    while len(issued) < WORKERS or sum(issued.values()) < 10:
        assert time.monotonic() < deadline
        with httpx.Client(base_url=deployment.url) as client:
            pid = client.get("/healthz").json()["pid"]
            assert auth_status(cookie)(client) == 200
            issued[pid] = issued.get(pid, 0) + 1
    line = 'authserver_tokens_issued_total{format="details",source="account"}'

    def counted(client: httpx.Client) -> float:
        found = [ln for ln in client.get("/metrics").text.splitlines() if ln.startswith(line)]
        return float(found[0].split()[-1]) if found else 0.0

    # every worker's /metrics shows the sum over both workers
    assert set(per_worker(deployment.url, counted).values()) == {float(sum(issued.values()))}
