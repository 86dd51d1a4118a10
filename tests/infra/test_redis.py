"""REDIS_URL: the login throttle, the /auth limits and session changes shared by every instance,
and Redis going away and coming back without a failed request. Two apps on one database and one
real redis-server stand in for two workers or machines. Their clock is frozen, so the sessions'
one-second recheck can never be what ends a remembered session: only the announcement can.
(Delivery is asynchronous, a matter of a millisecond: the checks wait for it, condition-based.)"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from realservers import Redis, free_port
from starlette.testclient import TestClient

from authserver.http.app import create_app
from authserver.http.provider_login import FlowCache, SharedFlowCache
from authserver.identity.passwords import Passwords
from authserver.infra.redislink import RedisLink

from conftest import Blocking, SettingsFactory
from helpers import FakeClock

Instance = Callable[..., TestClient]


@pytest.fixture
def instance(
    make_settings: SettingsFactory, fast_passwords: Passwords, clock: FakeClock, redis_url: str
) -> Iterator[Instance]:
    """``instance(**env)``: one more running app on the test's database and Redis."""
    clients: list[TestClient] = []

    def start(**env: str) -> TestClient:
        settings = make_settings(REDIS_URL=redis_url, **env)
        client = TestClient(create_app(settings, clock=clock, passwords=fast_passwords), base_url="http://testserver")
        client.__enter__()
        clients.append(client)
        wait_subscribed(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def wait_subscribed(client: TestClient) -> None:
    """Until the instance listens to session announcements (at start-up, or after Redis came back)."""
    changes: Any = client.app.state.services.changes  # type: ignore[attr-defined]
    client.portal.call(changes.subscribed.wait)  # type: ignore[union-attr]


def add_alice(client: TestClient) -> None:
    users = Blocking(client.app.state.services.users, client)  # type: ignore[attr-defined]
    users.add("alice", "correct horse", role=None, client_id=None, now=0.0)


def log_in(client: TestClient, name: str = "alice", password: str = "correct horse") -> str:
    response = client.post("/login", json={"username": name, "password": password})
    assert response.status_code == 200, response.text
    cookie = response.cookies["authserver_session"]
    client.cookies.clear()  # each request names its session
    return cookie


def with_cookie(cookie: str) -> dict[str, str]:
    return {"Cookie": f"authserver_session={cookie}"}


def soon(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Whether ``condition`` holds now or becomes true within ``timeout`` seconds (real time)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def auth(client: TestClient, cookie: str) -> int:
    return client.get("/auth", headers=with_cookie(cookie)).status_code


def test_a_logout_on_one_instance_is_refused_by_the_other_at_once(instance: Instance) -> None:
    first, second = instance(), instance()
    add_alice(first)
    cookie = log_in(first)
    assert auth(second, cookie) == 200  # the second instance now remembers the session
    logout = first.post("/logout", headers=with_cookie(cookie))
    assert logout.status_code == 200
    # frozen clock: only the announcement can have told it; the reason is in the database, so the other
    # instance refuses the ended session for good (403) as the first would
    assert soon(lambda: auth(second, cookie) == 403)


@pytest.mark.parametrize(
    ("change", "status"),
    [
        (lambda users: users.set_disabled("alice", True), 403),
        (lambda users: users.set_password("alice", "new horse"), 403),
        (lambda users: users.remove("alice"), 403),
    ],
    ids=["disable", "set-password", "remove"],
)
def test_an_account_change_on_one_instance_reaches_the_other_at_once(
    instance: Instance, change: Callable[[Blocking], None], status: int
) -> None:
    first, second = instance(), instance()
    add_alice(first)
    cookie = log_in(first)
    assert auth(second, cookie) == 200
    change(Blocking(first.app.state.services.users, first))  # type: ignore[attr-defined]
    assert soon(lambda: auth(second, cookie) == status)


def test_a_role_change_made_by_the_cli_reaches_a_running_instance_at_once(
    instance: Instance, redis_url: str, make_settings: SettingsFactory
) -> None:
    from authserver.cli import main

    server = instance()
    add_alice(server)
    cookie = log_in(server)
    assert server.get("/session", headers=with_cookie(cookie)).json()["role"] == "user"
    settings = make_settings()
    environ = {"AUTHSERVER_ENV": "development", "DATABASE_URL": settings.database_url, "REDIS_URL": redis_url}
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        assert main(["users", "set-role", "alice", "admin"], environ=environ) == 0
    finally:
        root.handlers[:], root.level = saved
    assert soon(lambda: server.get("/session", headers=with_cookie(cookie)).json()["role"] == "admin")


def test_the_login_throttle_counts_across_instances(instance: Instance) -> None:
    first, second = instance(), instance()
    add_alice(first)
    for attempt in range(10):
        answering = first if attempt % 2 else second
        assert answering.post("/login", json={"username": "alice", "password": "guess"}).status_code == 401
    for answering in (first, second):
        refused = answering.post("/login", json={"username": "alice", "password": "correct horse"})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == 42910


def test_auth_limits_are_off_by_default_and_shared_when_on(instance: Instance) -> None:
    plain = instance()
    add_alice(plain)
    cookie = log_in(plain)
    assert all(auth(plain, cookie) == 200 for _ in range(20))
    first = instance(AUTHSERVER_AUTH_RATE_PER_IDENTITY="3/minute")
    second = instance(AUTHSERVER_AUTH_RATE_PER_IDENTITY="3/minute")
    assert [auth(first, cookie), auth(second, cookie), auth(first, cookie)] == [200, 200, 200]
    refused = second.get("/auth", headers=with_cookie(cookie))
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["message"], error["code"], error["statusCode"]) == (
        "too many token requests for this clientId (limit 3 per 1 minute)",
        42910,
        429,
    )


def test_redis_going_away_degrades_to_local_state_and_recovers(
    instance: Instance, redis_server: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = instance(), instance()
    add_alice(first)
    cookie = log_in(first)
    assert auth(second, cookie) == 200
    assert first.get("/readyz").json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}
    redis_server.stop()
    caplog.set_level(logging.WARNING, logger="authserver.redis")
    # Known sessions keep getting tokens; logins, logouts and throttling go on, per process.
    assert auth(first, cookie) == 200 and auth(second, cookie) == 200
    assert first.post("/login", json={"username": "alice", "password": "guess"}).status_code == 401
    other = log_in(second)
    assert auth(second, other) == 200
    assert second.post("/logout", headers=with_cookie(other)).status_code == 200
    assert auth(second, other) == 403
    ready = first.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"].startswith("Redis redis://127.0.0.1:")
    assert any("is not answering" in r.getMessage() and "falls back" in r.getMessage() for r in caplog.records)
    assert 'authserver_redis_errors_total{operation="ping"}' in first.get("/metrics").text
    redis_server.start()  # the same port
    for client in (first, second):
        wait_subscribed(client)
    assert first.get("/readyz").status_code == 200
    assert any("answers again" in r.getMessage() for r in caplog.records)
    # Shared again: a logout on one instance reaches the other at once.
    assert auth(second, cookie) == 200
    first.post("/logout", headers=with_cookie(cookie))
    assert soon(lambda: auth(second, cookie) == 403)


def test_check_reports_redis_and_refuses_one_that_does_not_answer(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from authserver.cli import main

    monkeypatch.chdir(tmp_path)
    environ = {
        "AUTHSERVER_ENV": "development",
        "REDIS_URL": redis_url,
        "AUTHSERVER_AUTH_RATE_PER_IDENTITY": "120/minute",
    }
    assert main(["check"], environ=environ) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"  Redis: {redis_url} (answers)" in out
    assert "  /auth limits: 120/minute per clientId" in out
    port = free_port()
    environ["REDIS_URL"] = f"redis://:hunter2@127.0.0.1:{port}/0"
    assert main(["check"], environ=environ) == 3
    err = capsys.readouterr().err
    assert f"REDIS_URL: Redis redis://127.0.0.1:{port}/0 is not answering (ConnectionError)" in err
    assert "hunter2" not in err


def test_a_provider_login_begun_on_one_instance_can_finish_on_another(redis_url: str) -> None:
    """The code flow's state (PKCE verifier, nonce) is found by whichever worker answers the callback."""

    async def scenario() -> tuple[str | None, str | None, str | None]:
        first, second = RedisLink(redis_url), RedisLink(redis_url)
        try:
            began = SharedFlowCache(first, FlowCache())
            answers = SharedFlowCache(second, FlowCache())
            await began.set("state-123", '{"code_verifier": "v"}', 600)
            found = await answers.get("state-123")
            await answers.delete("state-123")
            gone = await began.get("unknown-state")
            after_delete = await SharedFlowCache(first, FlowCache()).get("state-123")
            return found, gone, after_delete
        finally:
            await first.close()
            await second.close()

    found, gone, after_delete = asyncio.run(scenario())
    assert found == '{"code_verifier": "v"}'
    assert gone is None
    assert after_delete is None


def test_without_redis_a_provider_login_still_finishes_on_the_instance_that_began_it() -> None:
    async def scenario() -> str | None:
        link = RedisLink(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
        try:
            cache = SharedFlowCache(link, FlowCache())
            await cache.set("state-456", "flow", 600)  # Redis does not answer: kept in this process
            return await cache.get("state-456")
        finally:
            await link.close()

    assert asyncio.run(scenario()) == "flow"
