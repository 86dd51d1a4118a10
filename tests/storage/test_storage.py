"""The storage engines: schema versions (both engines), a SQLite file created on first use and
checked while serving, a busy or unreachable database a retryable 503 or a clear error, not a crash."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from realservers import Postgres, free_port

from authserver.errors import DatabaseError, UnavailableError
from authserver.storage import PendingRevocation, QueuedRevocations, Storage, UpstreamLogout, UserRecord
from authserver.storage.postgres import PostgresStorage
from authserver.storage.schema import SCHEMA_VERSION
from authserver.storage.sqlite import Database, SqliteStorage

from conftest import Reopen, fresh_postgres_url, raw_sql


def test_the_file_and_schema_are_created_on_first_use(tmp_path: Path) -> None:
    db = SqliteStorage(str(tmp_path / "new.db")).db
    tables = {row[0] for row in db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.close()
    assert {"users", "sessions"} <= tables


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="does not exist"):
        Database(str(tmp_path / "nowhere" / "x.db"))


def test_a_database_locked_by_another_process_is_unavailable_503(tmp_path: Path) -> None:
    path = str(tmp_path / "busy.db")
    SqliteStorage(path).db.close()
    db = Database(path, busy_timeout=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(UnavailableError) as caught:
            db.execute("DELETE FROM sessions WHERE expires < 0")
        assert caught.value.status == 503
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert db.execute("DELETE FROM sessions WHERE expires < 0") == 0  # and it recovers
    db.close()


def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database\n" * 100, encoding="utf-8")
    with pytest.raises(DatabaseError, match="file is not a database"):
        SqliteStorage(str(path))
    assert path.read_text(encoding="utf-8") == "not a database\n" * 100


# --- schema versions (both engines) ---------------------------------------------------------------


@pytest.mark.anyio
async def test_an_empty_database_gets_the_current_schema(storage: Storage) -> None:
    assert await storage.version() == SCHEMA_VERSION
    assert await storage.ready() is None
    assert [tuple(row) for row in await raw_sql(storage, "SELECT version FROM schema_version")] == [(SCHEMA_VERSION,)]


@pytest.mark.anyio
async def test_a_newer_schema_is_refused_and_left_alone(storage: Storage, reopen: Reopen) -> None:
    await raw_sql(storage, "UPDATE schema_version SET version = version + 1")
    with pytest.raises(DatabaseError) as caught:
        await reopen()
    assert caught.value.message == (
        f"the database ({storage.description}) has schema version {SCHEMA_VERSION + 1}, which this authserver"
        f" (schema {SCHEMA_VERSION}) does not know: refusing to use it; run the authserver version that wrote it"
    )
    # and a running service stops being ready, saying why without naming the file (readiness answers
    # go to whoever asks; the log names it)
    public = "SQLite" if isinstance(storage, SqliteStorage) else storage.description
    assert await storage.ready() == caught.value.message.replace(storage.description, public)
    assert [tuple(row) for row in await raw_sql(storage, "SELECT version FROM schema_version")] == [
        (SCHEMA_VERSION + 1,)
    ]


@pytest.mark.anyio
async def test_an_older_schema_is_refused_until_db_upgrade_has_run(storage: Storage, reopen: Reopen) -> None:
    await raw_sql(storage, "UPDATE schema_version SET version = 0")
    with pytest.raises(
        DatabaseError, match=rf"older than this authserver's {SCHEMA_VERSION}: run `authserver db upgrade`"
    ):
        await reopen()
    assert await storage.upgrade() == list(range(1, SCHEMA_VERSION + 1))
    assert await storage.upgrade() == []  # nothing left to do
    again = await reopen()
    try:
        assert await again.version() == SCHEMA_VERSION
    finally:
        await again.close()


def test_a_sqlite_file_from_before_schema_versions_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE users (username TEXT PRIMARY KEY, client_id TEXT NOT NULL UNIQUE, role TEXT NOT NULL,"
        " password_hash TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);"
        "CREATE TABLE sessions (id_hash TEXT PRIMARY KEY, username TEXT NOT NULL, client_id TEXT NOT NULL,"
        " role TEXT NOT NULL, source TEXT NOT NULL, expires REAL NOT NULL);"
        "INSERT INTO users VALUES ('alice', 'alice', 'user', 'x', 0, 0);"
    )
    old.commit()
    old.close()
    storage = SqliteStorage(str(path))
    assert storage.db.query("SELECT version FROM schema_version") == [(1,)]  # its tables are version 1's
    assert storage.db.query("SELECT username FROM users") == [("alice",)]
    storage.db.close()


@pytest.mark.anyio
async def test_a_version_1_database_gets_the_revocation_outbox_from_db_upgrade(
    storage: Storage, reopen: Reopen
) -> None:
    await raw_sql(storage, "DROP TABLE revocation_outbox")
    await raw_sql(storage, "DROP TABLE ended_sessions")
    await raw_sql(storage, "UPDATE schema_version SET version = 1")
    with pytest.raises(DatabaseError, match=rf"schema version 1, older than this authserver's {SCHEMA_VERSION}"):
        await reopen()
    assert await storage.upgrade() == list(range(2, SCHEMA_VERSION + 1))
    again = await reopen()
    try:
        await again.outbox.add([PendingRevocation("app.key", "clientId:alice", 1000, False, "test")], now=1.0)
        assert await again.outbox.pending() == 1
    finally:
        await again.close()


# --- readiness of a SQLite file -------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_deleted_database_file_is_not_ready(tmp_path: Path) -> None:
    path = tmp_path / "gone.db"
    storage = SqliteStorage(str(path))
    await storage.open()
    assert await storage.ready() is None
    path.unlink()
    assert await storage.ready() == "the database file is gone (deleted or moved while the service runs)"
    await storage.close()


@pytest.mark.anyio
async def test_a_replaced_database_file_is_not_ready(tmp_path: Path) -> None:
    path = tmp_path / "swapped.db"
    storage = SqliteStorage(str(path))
    await storage.open()
    other = SqliteStorage(str(tmp_path / "other.db"))
    other.db.close()
    os.replace(tmp_path / "other.db", path)
    assert await storage.ready() == "the database file was replaced while the service runs: restart it"
    await storage.close()


@pytest.mark.anyio
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only files")
async def test_a_read_only_database_file_is_not_ready(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    storage = SqliteStorage(str(path))
    await storage.open()
    path.chmod(0o444)
    assert await storage.ready() == f"the database file {path} is not writable"
    await storage.close()


# --- PostgreSQL connection problems ---------------------------------------------------------------


@pytest.mark.anyio
async def test_an_unreachable_postgres_is_a_database_error_without_the_password() -> None:
    port = free_port()  # nothing listens there
    storage = PostgresStorage(f"postgresql://user:hunter2@127.0.0.1:{port}/auth", timeout=1.0)
    with pytest.raises(DatabaseError) as caught:
        await storage.open()
    assert caught.value.message == f"cannot connect to the database (postgresql://user@127.0.0.1:{port}/auth)"
    assert "hunter2" not in repr(caught.value)


@pytest.mark.anyio
async def test_postgres_going_away_is_a_503_and_ready_says_why(postgres: Postgres) -> None:
    url = await fresh_postgres_url(postgres)
    storage = PostgresStorage(url, timeout=1.0)
    await storage.open()
    port = postgres.port
    broken = PostgresStorage(url.replace(f":{port}/", f":{free_port()}/"), timeout=1.0)
    assert await broken.ready() is not None
    await broken.close()
    assert await storage.ready() is None
    await storage.close()


@pytest.mark.anyio
async def test_every_postgres_connection_gives_up_on_a_silent_server_after_the_timeout(
    postgres: Postgres,
) -> None:
    """A partition or a vanished host acknowledges nothing: libpq gives up on the connection after
    ``timeout`` (tcp_user_timeout, keepalives) rather than the kernel's quarter of an hour. (Nothing
    here can black-hole loopback, so this reads the options libpq accepted on a pooled connection.)"""
    storage = PostgresStorage(await fresh_postgres_url(postgres), timeout=3.0)
    await storage.open()
    async with storage.connection() as conn:
        used = {k: v for k, v in (opt.split("=", 1) for opt in conn.info.dsn.split()) if k.startswith(("tcp", "keep"))}
    assert used == {
        "tcp_user_timeout": "3000",
        "keepalives": "1",
        "keepalives_idle": "3",
        "keepalives_interval": "1",
        "keepalives_count": "3",
    }
    await storage.close()


async def _hold(storage: PostgresStorage, seconds: float) -> None:
    async with storage.connection() as conn:
        await conn.execute("SELECT pg_sleep(%s)", (seconds,))


@pytest.mark.anyio
async def test_a_busy_pool_is_a_503_that_leaves_the_breaker_closed(postgres: Postgres) -> None:
    storage = PostgresStorage(await fresh_postgres_url(postgres), max_size=1, wait=1.5)
    await storage.open()
    # one connection, three calls of 1 s: the second is served at 1 s, the third cannot be within 1.5 s
    # (half a second of slack either way, for a loaded machine)
    results = await asyncio.gather(*(_hold(storage, 1.0) for _ in range(3)), return_exceptions=True)
    assert [type(r).__name__ for r in results].count("StoreUnavailableError") == 1
    assert storage.breaker.problem is None  # others were served meanwhile: busy, not gone
    await _hold(storage, 0)
    await storage.close()


@pytest.mark.anyio
async def test_no_connection_while_nobody_is_served_opens_the_breaker_until_a_probe_connects(
    postgres: Postgres,
) -> None:
    storage = PostgresStorage(await fresh_postgres_url(postgres), max_size=1, wait=0.2, probe_interval=0.1)
    await storage.open()
    holder = asyncio.ensure_future(_hold(storage, 0.5))
    await asyncio.sleep(0.05)
    with pytest.raises(UnavailableError):
        await _hold(storage, 0)  # waits 0.2 s, and nobody got a connection meanwhile: slow is gone
    assert storage.breaker.problem == "no connection within 0.2 s"
    with pytest.raises(UnavailableError, match="no connection within 0.2 s"):
        await _hold(storage, 0)  # refused at once
    await asyncio.sleep(0.5)  # the probe connected: a fresh pool, the breaker closed
    assert storage.breaker.problem is None
    await _hold(storage, 0)
    await holder  # the call on the old pool finishes on its connection
    await storage.close()


@pytest.mark.anyio
async def test_a_query_error_on_a_working_connection_is_a_503_that_leaves_the_breaker_closed(
    postgres: Postgres,
) -> None:
    storage = PostgresStorage(await fresh_postgres_url(postgres))
    await storage.open()
    with pytest.raises(UnavailableError, match="statement timeout"):
        async with storage.connection() as conn:
            await conn.execute("SET statement_timeout = 10")
            await conn.execute("SELECT pg_sleep(1)")
    assert storage.breaker.problem is None
    await storage.close()


# --- a change and the revocation it calls for: one transaction (both engines) ---------------------

QUEUED = QueuedRevocations((PendingRevocation("app.key", "clientId:alice", 1000, False, "test"),), 1.0)
ALICE = UserRecord("alice", "alice", "user", False, "hash")

#: Each change that takes back tokens, with the revocation it stores (storage, revoke) -> changed.
CHANGES: dict[str, Callable[[Storage, QueuedRevocations], Awaitable[object]]] = {
    "set-role": lambda s, q: s.users.set_role("alice", "admin", revoke=q),
    "disable": lambda s, q: s.users.set_disabled("alice", True, revoke=q),
    "set-password": lambda s, q: s.users.set_password_hash("alice", "new", end_sessions=True, revoke=q),
    "remove": lambda s, q: s.users.delete("alice", revoke=q),
    "logout": lambda s, q: s.sessions.delete("h1", reason="logout", revoke=q),
    "everywhere": lambda s, q: s.sessions.delete_subject("alice", "account", reason="everywhere", revoke=q),
    "provider-logout": lambda s, q: s.logouts.log_out(
        UpstreamLogout("https://idp.test", "account", "alice", "alice", None, 10.0, 9e9), now=1.0, revoke=q
    ),
}


async def _alice_logged_in(storage: Storage) -> list[tuple[Any, ...]]:
    """alice with one session; returns what the change must leave alone when it fails."""
    assert await storage.users.insert(ALICE, created=0.0)
    await storage.sessions.insert(
        "h1", subject="alice", client_id="alice", role="user", source="account", expires=9e9, now=0.0
    )
    return await _accounts(storage)


async def _accounts(storage: Storage) -> list[tuple[Any, ...]]:
    users = await raw_sql(storage, "SELECT username, role, disabled, password_hash FROM users")
    sessions = await raw_sql(storage, "SELECT id_hash FROM sessions")
    ended = await raw_sql(storage, "SELECT id_hash, reason FROM ended_sessions")
    return [tuple(row) for row in [*users, *sessions, *ended]]


@pytest.mark.anyio
@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_a_change_stores_its_revocation_in_the_same_transaction(storage: Storage, change: str) -> None:
    before = await _alice_logged_in(storage)
    await CHANGES[change](storage, QUEUED)
    assert await _accounts(storage) != before
    assert await storage.outbox.pending() == 1


@pytest.mark.anyio
@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_when_the_revocation_cannot_be_stored_the_change_is_rolled_back(storage: Storage, change: str) -> None:
    """A crash between the two can lose neither: the outbox insert fails here (its table is gone),
    and the account and its sessions are as they were."""
    before = await _alice_logged_in(storage)
    await raw_sql(storage, "DROP TABLE revocation_outbox")
    with pytest.raises(Exception, match="revocation_outbox"):
        await CHANGES[change](storage, QUEUED)
    assert await _accounts(storage) == before


@pytest.mark.anyio
async def test_a_change_to_no_account_queues_nothing(storage: Storage) -> None:
    assert not await storage.users.set_disabled("nobody", True, revoke=QUEUED)
    assert not await storage.users.delete("nobody", revoke=QUEUED)
    assert await storage.outbox.pending() == 0


# --- back-channel logouts (both engines) ------------------------------------------------------------

IDP = "https://idp.test"


def _logout(*, sub: str | None = None, sid: str | None = None, cutoff: float = 100.0) -> UpstreamLogout:
    subject = None if sub is None else f"{IDP}#{sub}"
    return UpstreamLogout(IDP, f"oidc:{IDP}", sub, subject, sid, cutoff, expires=10_000.0)


async def _provider_session(storage: Storage, id_hash: str, sub: str, sid: str | None) -> None:
    await storage.sessions.insert(
        id_hash, subject=f"{IDP}#{sub}", client_id=sub, role="user", source=f"oidc:{IDP}", expires=9e9, now=0.0, sid=sid
    )


@pytest.mark.anyio
async def test_a_logout_token_id_is_claimed_once_until_it_expires_or_is_released(storage: Storage) -> None:
    logouts = storage.logouts
    assert await logouts.claim("t1", expires=50.0, now=0.0)
    assert not await logouts.claim("t1", expires=50.0, now=1.0)  # a replay
    await logouts.release("t1")
    assert await logouts.claim("t1", expires=50.0, now=2.0)  # released: the provider may send it again
    assert await logouts.claim("t1", expires=200.0, now=60.0)  # expired, purged: claimable (the age check refuses it)


@pytest.mark.anyio
async def test_a_logout_by_sid_ends_that_provider_session_only_and_is_recorded(storage: Storage) -> None:
    await _provider_session(storage, "h-a", "erin", "sid-a")
    await _provider_session(storage, "h-b", "erin", "sid-b")
    assert await storage.logouts.sessions(_logout(sub="erin", sid="sid-a")) == [("h-a", "erin")]
    assert await storage.logouts.log_out(_logout(sub="erin", sid="sid-a"), now=1.0) == 1
    assert await storage.sessions.lookup("h-a") is None
    assert await storage.sessions.ended("h-a", now=1.0) == "provider"
    assert await storage.sessions.lookup("h-b") is not None
    assert await storage.logouts.cutoffs(IDP, "erin", "sid-a", now=1.0) == [("sid", 100.0)]
    assert await storage.logouts.cutoffs(IDP, "erin", "sid-b", now=1.0) == []


@pytest.mark.anyio
async def test_a_logout_by_sub_ends_every_session_of_the_subject_and_keeps_the_latest_cutoff(storage: Storage) -> None:
    await _provider_session(storage, "h-a", "erin", "sid-a")
    await _provider_session(storage, "h-b", "erin", None)
    await _provider_session(storage, "h-c", "finn", None)
    assert await storage.logouts.log_out(_logout(sub="erin", cutoff=200.0), now=1.0) == 2
    assert await storage.logouts.log_out(_logout(sub="erin", cutoff=150.0), now=2.0) == 0
    assert await storage.sessions.lookup("h-c") is not None
    assert await storage.logouts.cutoffs(IDP, "erin", None, now=3.0) == [("sub", 200.0)]
    assert await storage.logouts.cutoffs("https://other.test", "erin", None, now=3.0) == []
    assert await storage.logouts.cutoffs(IDP, "erin", None, now=10_000.0) == []  # kept until it expires
