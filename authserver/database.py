"""The accounts database: one SQLite file (created on first use) shared by users and sessions."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import DatabaseError, UnavailableError

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
        #: Bumped by every write through this object: caches compare it to see in-process changes.
        self.generation = 0

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
    def transaction(self, *, invalidates: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction. ``invalidates=False`` for writes no cache depends on."""
        with self._lock, _available():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            if invalidates:
                self.generation += 1

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement; returns the number of rows changed."""
        with self._lock, _available():
            changed = self._conn.execute(sql, params).rowcount
            self.generation += 1
            return changed


@contextmanager
def _available() -> Iterator[None]:
    """A locked or unreachable database is a temporary condition for clients (503, they retry)."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise UnavailableError(f"database unavailable: {exc}") from None
