"""The SQLite engine: one file (created on first use) shared by accounts and sessions."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from ..errors import DatabaseError, UnavailableError
from . import SessionRecord, UserRecord

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username      TEXT PRIMARY KEY,
    client_id     TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash   TEXT PRIMARY KEY,
    username  TEXT NOT NULL,
    client_id TEXT NOT NULL,
    role      TEXT NOT NULL,
    source    TEXT NOT NULL,
    expires   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires);
"""


class Database:
    """Two SQLite connections in WAL mode, each shared by threads behind its own lock.

    Writes go through the writer, which may wait up to ``busy_timeout`` for another process (the
    CLI): call them from a worker thread. Reads go through the reader; in WAL mode a reader never
    waits for a writer, so a read is short enough for the event loop (session resolution on the
    hot path of ``/auth``).
    """

    def __init__(self, path: str, *, busy_timeout: float = 5.0, read_timeout: float = 0.25) -> None:
        self.path = path
        if path != ":memory:":
            parent = Path(path).parent
            if not parent.is_dir():
                raise DatabaseError(f"database directory {str(parent)!r} does not exist")
        try:
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._reader = self._conn
            if path != ":memory:":
                self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.executescript(SCHEMA)
            if path != ":memory:":  # an in-memory database exists only on its one connection
                self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                self._reader.execute(f"PRAGMA busy_timeout = {int(read_timeout * 1000)}")
                self._reader.execute("PRAGMA query_only = 1")
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open database {path!r}: {exc}") from None
        self._lock = threading.Lock()
        self._read_lock = self._lock if self._reader is self._conn else threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        if self._reader is not self._conn:
            with self._read_lock:
                self._reader.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._read_lock, _available():
            return self._reader.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._read_lock, _available():
            row: tuple[Any, ...] | None = self._reader.execute(sql, params).fetchone()
            return row

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction."""
        with self._lock, _available():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement; returns the number of rows changed."""
        with self._lock, _available():
            changed: int = self._conn.execute(sql, params).rowcount
            return changed


@contextmanager
def _available() -> Iterator[None]:
    """A locked or unreachable database is a temporary condition for clients (503, they retry)."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise UnavailableError(f"database unavailable: {exc}") from None


_USER_COLUMNS = "username, client_id, role, disabled, password_hash"


def _user(row: Sequence[Any]) -> UserRecord:
    return UserRecord(row[0], row[1], row[2], bool(row[3]), row[4])


async def _write(call: Callable[[], T]) -> T:
    """Writes may wait for another process's lock (``busy_timeout``): never on the event loop."""
    return await anyio.to_thread.run_sync(call)


class SqliteUsers:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, username: str) -> UserRecord | None:
        row = self.db.query_one(f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?", (username,))  # noqa: S608
        return None if row is None else _user(row)

    async def by_client_id(self, client_id: str) -> UserRecord | None:
        row = self.db.query_one(f"SELECT {_USER_COLUMNS} FROM users WHERE client_id = ?", (client_id,))  # noqa: S608
        return None if row is None else _user(row)

    async def all(self) -> list[UserRecord]:
        return [_user(row) for row in self.db.query(f"SELECT {_USER_COLUMNS} FROM users ORDER BY username")]  # noqa: S608

    async def insert(self, user: UserRecord, *, created: float) -> bool:
        def insert() -> bool:
            names = (user.username, user.username, user.client_id, user.client_id)
            try:
                with self.db.transaction() as conn:
                    taken = conn.execute(
                        "SELECT 1 FROM users WHERE username = ? OR client_id = ? OR username = ? OR client_id = ?",
                        names,
                    ).fetchone()
                    if taken:
                        return False
                    conn.execute(
                        "INSERT INTO users (username, client_id, role, password_hash, disabled, created)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (user.username, user.client_id, user.role, user.password_hash, int(user.disabled), created),
                    )
            except sqlite3.IntegrityError:
                return False
            return True

        return await _write(insert)

    async def set_role(self, username: str, role: str) -> bool:
        sql = "UPDATE users SET role = ? WHERE username = ?"
        return await _write(lambda: self.db.execute(sql, (role, username)) > 0)

    async def set_disabled(self, username: str, disabled: bool) -> bool:
        sql = "UPDATE users SET disabled = ? WHERE username = ?"
        return await _write(lambda: self.db.execute(sql, (int(disabled), username)) > 0)

    async def set_password_hash(self, username: str, password_hash: str, *, end_sessions: bool) -> bool:
        def update() -> bool:
            with self.db.transaction() as conn:
                changed = conn.execute(
                    "UPDATE users SET password_hash = ? WHERE username = ?", (password_hash, username)
                ).rowcount
                if end_sessions:
                    conn.execute("DELETE FROM sessions WHERE username = ? AND source = 'account'", (username,))
            return bool(changed)

        return await _write(update)

    async def delete(self, username: str) -> bool:
        def delete() -> bool:
            with self.db.transaction() as conn:
                changed = conn.execute("DELETE FROM users WHERE username = ?", (username,)).rowcount
                conn.execute("DELETE FROM sessions WHERE username = ? AND source = 'account'", (username,))
            return bool(changed)

        return await _write(delete)


class SqliteSessions:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(
        self, id_hash: str, *, subject: str, client_id: str, role: str, source: str, expires: float, now: float
    ) -> None:
        def insert() -> None:
            with self.db.transaction() as conn:
                conn.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
                conn.execute(
                    "INSERT INTO sessions (id_hash, username, client_id, role, source, expires)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (id_hash, subject, client_id, role, source, expires),
                )

        await _write(insert)

    async def delete(self, id_hash: str) -> None:
        await _write(lambda: self.db.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,)))

    async def lookup(self, id_hash: str) -> SessionRecord | None:
        # NOTE: a read in WAL mode never waits for a writer: short enough for the event loop.
        row = self.db.query_one(
            "SELECT s.username, s.client_id, s.role, s.source, s.expires,"
            " u.username, u.client_id, u.role, u.disabled, u.password_hash,"
            " (SELECT COUNT(*) FROM users a WHERE a.username IN (s.username, s.client_id)"
            "  OR a.client_id IN (s.username, s.client_id))"
            " FROM sessions s LEFT JOIN users u ON s.source = 'account' AND u.username = s.username"
            " WHERE s.id_hash = ?",
            (id_hash,),
        )
        if row is None:
            return None
        account = None if row[5] is None else _user(row[5:10])
        return SessionRecord(row[0], row[1], row[2], row[3], row[4], account, bool(row[10]))


class SqliteStorage:
    """Accounts and sessions in one SQLite file (``:memory:`` for a throwaway database)."""

    def __init__(self, path: str) -> None:
        self.db = Database(path)
        self.users = SqliteUsers(self.db)
        self.sessions = SqliteSessions(self.db)
        self.description = "in memory" if path == ":memory:" else path

    async def close(self) -> None:
        self.db.close()
