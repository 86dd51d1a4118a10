"""A PostgreSQL outage, for real: the test's own cluster is stopped and started again under a running
service. Requests that need the database get a quick 503 with Retry-After (a breaker, probed in the
background), never a 500 and never a wait on the pool; /readyz says why; service is back soon after
the database is."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import httpx2  # the responses of Starlette's TestClient
import pytest
from realservers import Postgres

from conftest import Service, ServiceFactory, new_postgres

#: The issue's bounds: each answer while the database is away, and full service after it is back.
ANSWER_WITHIN = 1.0
BACK_WITHIN = 3.0


@pytest.fixture
def own_postgres() -> Iterator[Postgres]:
    """A cluster of this test's own (the session-wide one is never stopped)."""
    server = new_postgres()
    try:
        yield server
    finally:
        try:
            server.stop()
        except subprocess.CalledProcessError:
            pass  # already halted by a failed test: its folder is removed all the same


def _login(service: Service) -> tuple[httpx2.Response, float]:
    """A password login (it reads the account and writes a session: it needs the database), timed."""
    started = time.monotonic()
    response = service.client.post("/login", json={"username": "alice", "password": "correct horse"})
    return response, time.monotonic() - started


def _until(service: Service, status: int, within: float) -> tuple[float, list[httpx2.Response]]:
    """Log in until the answer is ``status``; returns the time that took and every answer on the way."""
    started = time.monotonic()
    answers: list[httpx2.Response] = []
    while time.monotonic() - started < within + 2.0:
        response, took = _login(service)
        answers.append(response)
        assert took < ANSWER_WITHIN, f"{response.status_code} after {took:.2f} s"
        if response.status_code == status:
            return time.monotonic() - started, answers
        time.sleep(0.02)
    raise AssertionError(f"no {status} within {within + 2.0} s: {[a.status_code for a in answers]}")


def test_an_outage_is_a_quick_503_with_retry_after_and_service_returns_with_the_database(
    own_postgres: Postgres, make_service: ServiceFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    own_postgres.psql("CREATE DATABASE outage")
    service = make_service(DATABASE_URL=own_postgres.url("outage"))
    service.add_user("alice")
    assert _login(service)[0].status_code == 200
    assert service.client.get("/auth").status_code == 200

    own_postgres.halt()
    to_503, answers = _until(service, 503, ANSWER_WITHIN)
    refused = answers[-1]
    assert {a.status_code for a in answers} == {503}  # never a 500
    assert refused.json()["error"]["code"] == 50300 and refused.headers["retry-after"] == "1"
    slowest = 0.0
    for _ in range(5):  # the breaker is open: every request answered at once, none waits for the pool
        response, took = _login(service)
        assert response.status_code == 503 and response.headers["retry-after"] == "1" and took < 0.2
        slowest = max(slowest, took)
    assert service.client.get("/auth").status_code == 200  # a session resolved within the last second needs no database
    service.clock.advance(2.0)  # past the session memory: /auth needs the database too
    started = time.monotonic()
    renewal = service.client.get("/auth")
    assert renewal.status_code == 503 and renewal.headers["retry-after"] == "1"
    assert time.monotonic() - started < 0.2
    ready = service.client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("database unavailable")

    own_postgres.resume()
    to_200, answers = _until(service, 200, BACK_WITHIN)
    assert {a.status_code for a in answers} <= {503, 200}  # never a 500
    assert to_503 < ANSWER_WITHIN and to_200 < BACK_WITHIN
    assert service.client.get("/readyz").status_code == 200
    assert service.client.get("/auth").status_code == 200
    with capsys.disabled():
        print(
            f"\n[outage] first 503 {to_503 * 1000:.0f} ms after the database went away;"
            f" a 503 takes at most {slowest * 1000:.1f} ms while it is away;"
            f" first 200 {to_200 * 1000:.0f} ms after it was back"
        )
