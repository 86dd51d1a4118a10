"""Shared fixtures: settings built from dicts (never os.environ), a fake clock, fast argon2id,
the app behind Starlette's TestClient, and a real uvicorn server for client-library tests."""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from realservers import Postgres, Redis, postgres_bin
from starlette.testclient import TestClient

from authserver.config import Settings, load_settings
from authserver.http.app import create_app
from authserver.identity.passwords import Passwords
from authserver.storage import Storage
from authserver.storage.postgres import PostgresStorage
from authserver.storage.sqlite import SqliteStorage

from helpers import API_KEY, SESSION_SECRET, FakeClock


def _unavailable(what: str) -> None:
    """Skip a test that needs ``what``; under ``scripts/test`` (which installs it) fail instead."""
    if os.environ.get("AUTHSERVER_REQUIRE_E2E") == "1":
        pytest.fail(f"{what} is needed under AUTHSERVER_REQUIRE_E2E=1 (scripts/setup --test installs it)")
    pytest.skip(f"{what} is not installed (scripts/setup --test installs it)")


def new_postgres() -> Postgres:
    """A started cluster of Debian's PostgreSQL (loopback, a free port, a temporary folder); the
    caller stops it. Skipped (failed under ``scripts/test``) where PostgreSQL is not installed."""
    binaries = postgres_bin()
    if binaries is None:
        _unavailable("PostgreSQL (/usr/lib/postgresql/*/bin)")
        raise AssertionError("unreachable")
    server = Postgres(binaries)
    server.start()
    return server


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """Debian's PostgreSQL, one cluster for the whole run, with an ``authserver_test`` database."""
    server = new_postgres()
    try:
        server.psql("CREATE DATABASE authserver_test")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    """Debian's redis-server, one for the whole run (tests that stop it restart it on the same port)."""
    import shutil

    if shutil.which("redis-server") is None:
        _unavailable("redis-server")
    server = Redis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: Redis) -> str:
    """The run's redis-server, running and empty (a test before this one may have stopped or filled it)."""
    import redis

    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


_schemas = iter(range(1, 1_000_000))


async def fresh_postgres_url(postgres: Postgres) -> str:
    """A URL whose tables land in a new, empty schema of the test database (cheaper than a database)."""
    import psycopg

    schema = f"t{os.getpid()}_{next(_schemas)}"
    async with await psycopg.AsyncConnection.connect(postgres.url("authserver_test"), autocommit=True) as conn:
        await conn.execute(f"CREATE SCHEMA {schema}")
    return postgres.url("authserver_test", options=f"-csearch_path%3D{schema}")


@pytest.fixture
def anyio_backend() -> str:
    """``@pytest.mark.anyio`` tests run on asyncio (the event loop the service runs on)."""
    return "asyncio"


#: Opens another connection to the test's database, as another process would.
Reopen = Callable[[], Awaitable[Storage]]


@pytest.fixture(params=["sqlite", "postgresql"])
async def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Reopen]:
    """The storage engines every storage and identity test runs against, each on a fresh database."""
    if request.param == "postgresql":
        url = await fresh_postgres_url(request.getfixturevalue("postgres"))

        async def open_postgres() -> Storage:
            storage = PostgresStorage(url, max_size=4)
            await storage.open()
            return storage

        yield open_postgres
        return
    path = str(tmp_path / "authserver.db")

    async def open_sqlite() -> Storage:
        storage = SqliteStorage(path)
        await storage.open()
        return storage

    yield open_sqlite


@pytest.fixture
async def storage(reopen: Reopen) -> AsyncIterator[Storage]:
    opened = await reopen()
    yield opened
    await opened.close()


async def raw_sql(storage: Storage, sql: str) -> list[tuple[Any, ...]]:
    """Run one SQL statement on a test's database behind the storage layer's back (rows, for a SELECT)."""
    if isinstance(storage, SqliteStorage):
        if sql.lstrip().upper().startswith("SELECT"):
            return storage.db.query(sql)
        storage.db.execute(sql)
        return []
    if isinstance(storage, PostgresStorage):
        if sql.lstrip().upper().startswith("SELECT"):
            return await storage.fetch(sql)
        await storage.execute(sql)
        return []
    raise AssertionError(f"no raw SQL for {type(storage).__name__}")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fast_passwords() -> Passwords:
    # Real argon2id, cheap parameters: the tests check behaviour, not the work factor.
    return Passwords(time_cost=1, memory_cost=8192, parallelism=1)


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    def make(**env: str) -> Settings:
        base = {
            "ABLY_API_KEY": API_KEY,
            "SESSION_SECRET": SESSION_SECRET,
            "DATABASE_URL": f"sqlite:///{tmp_path}/authserver.db",
            # The service's tests see exact iat/exp and reach no Ably; tests/revocation/test_revocation.py turns
            # revocation and the iat margin (both on by default) back on against a sandbox.
            "ABLY_REVOCABLE_TOKENS": "false",
            "TOKEN_IAT_MARGIN": "0",
        }
        base.update(env)
        return load_settings({k: v for k, v in base.items() if v is not None}, env_file=None)

    return make


class Blocking:
    """An async object's coroutine methods called from a test's thread, on the app's event loop
    (through the TestClient's portal): ``Blocking(users, client).add(...)`` waits for ``users.add``."""

    def __init__(self, target: Any, client: TestClient) -> None:
        self._target = target
        self._client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._target, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._client.portal.call(functools.partial(method, *args, **kwargs))  # type: ignore[union-attr]

        return call


@dataclass
class Service:
    """The app under test with its collaborators, for tests that set up accounts directly."""

    client: TestClient
    settings: Settings
    clock: FakeClock

    @property
    def users(self) -> Any:
        """The app's :class:`~authserver.identity.users.UserStore`, its methods called as blocking calls."""
        return Blocking(self.client.app.state.services.users, self.client)  # type: ignore[attr-defined]

    def add_user(self, name: str, password: str = "correct horse", **kwargs: Any) -> None:
        kwargs.setdefault("role", None)
        kwargs.setdefault("client_id", None)
        self.users.add(name, password, now=self.clock(), **kwargs)

    def login(self, name: str, password: str = "correct horse") -> None:
        response = self.client.post("/login", json={"username": name, "password": password})
        assert response.status_code == 200, response.text


ServiceFactory = Callable[..., Service]


@pytest.fixture
def make_service(
    make_settings: SettingsFactory, clock: FakeClock, fast_passwords: Passwords
) -> Iterator[ServiceFactory]:
    clients: list[TestClient] = []

    def make(**env: str) -> Service:
        settings = make_settings(**env)
        client = TestClient(create_app(settings, clock=clock, passwords=fast_passwords), base_url="http://testserver")
        client.__enter__()
        clients.append(client)
        return Service(client, settings, clock)

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def service(make_service: ServiceFactory) -> Service:
    return make_service()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under ``scripts/test`` (AUTHSERVER_REQUIRE_E2E=1) a skipped Node or browser test fails: the
    set-up installs what they need, so a skip there means something is broken, not absent."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    required = os.environ.get("AUTHSERVER_REQUIRE_E2E") == "1"
    if required and report.skipped and any(item.get_closest_marker(m) for m in ("node", "browser")):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"end-to-end test skipped under AUTHSERVER_REQUIRE_E2E=1: {reason}"
