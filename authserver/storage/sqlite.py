"""The SQLite engine: one file (created on first use) shared by accounts and sessions."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from authserver.errors import DatabaseError, StoreUnavailableError, UnavailableError
from authserver.storage import (
    ENDED_PASSWORD,
    ENDED_PROVIDER,
    ENDED_REMOVED,
    AdminKeyRecord,
    OutboxState,
    PendingRevocation,
    QueuedRevocations,
    SessionRecord,
    SessionSummary,
    UpstreamLogout,
    UserRecord,
    admin_key,
    logout_rows,
    logout_where,
    outbox_state,
)
from authserver.storage.schema import MIGRATIONS, VERSION_TABLE, pending, require_current, schema_problem
from authserver.storage.statements import SQLITE as SQL

T = TypeVar("T")
log = logging.getLogger("authserver.storage")


#: Why a shared-memory file that is there but not writable refuses the database (SQLite would say
#: "attempt to write a readonly database" at the first write, naming the wrong file).
SHM_NOT_WRITABLE = (
    "its shared-memory file {shm} is not writable by this user (made by another user, or read-only):"
    " give it to the user authserver runs as, or remove it while no process has the database open"
)


class Database:
    """Two SQLite connections in WAL mode, each shared by threads behind its own lock.

    Writes go through the writer, which may wait up to ``busy_timeout`` for another process (the
    CLI): call them from a worker thread. Reads go through the reader; in WAL mode a reader never
    waits for a writer, so a read is short enough for the event loop (session resolution on the
    hot path of ``/auth``).
    """

    def __init__(self, path: str, *, busy_timeout: float = 5.0, read_timeout: float = 0.25) -> None:
        self.path = path
        #: SQLite's shared-memory file (the WAL index, mapped into memory by every connection).
        self.shm = f"{path}-shm"
        if path != ":memory:":
            parent = Path(path).parent
            if not parent.is_dir():
                raise DatabaseError(f"database directory {str(parent)!r} does not exist")
            if os.path.exists(self.shm) and not os.access(self.shm, os.W_OK):
                raise DatabaseError(f"cannot open database {path!r}: {SHM_NOT_WRITABLE.format(shm=self.shm)}")
        try:
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._reader = self._conn
            if path != ":memory:":
                self._conn.execute("PRAGMA journal_mode = WAL")
            if path != ":memory:":  # an in-memory database exists only on its one connection
                self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                self._reader.execute(f"PRAGMA busy_timeout = {int(read_timeout * 1000)}")
                self._reader.execute("PRAGMA query_only = 1")
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open database {path!r}: {exc}") from None
        self._lock = threading.Lock()
        self._read_lock = self._lock if self._reader is self._conn else threading.Lock()
        #: The file this opened (device, inode): a write into another, or into one deleted since, is refused.
        self.identity = file_identity(path)
        self._lost: str | None = None
        #: The shared-memory file as last seen ((device, inode), size): it must never shrink under a mapping.
        self._mapped: tuple[tuple[int, int] | None, int] = (None, 0)
        self._shm_lost: str | None = None

    def file_problem(self) -> str | None:
        """Why the file this opened is no longer the database (gone, or another file in its place), or None."""
        if self.path == ":memory:":
            return None
        current = file_identity(self.path)
        if current is None:
            return "the database file is gone (deleted or moved while the service runs)"
        if current != self.identity:
            return "the database file was replaced while the service runs: restart it"
        return None

    def _writable(self) -> None:
        """:raises StoreUnavailableError: (503) the file was deleted or replaced: what would be written now
        would vanish at the next restart, so nothing is."""
        problem = self.file_problem()
        if problem is None:
            self._lost = None
            return
        if self._lost != problem:
            self._lost = problem
            log.error(
                "%s (%s): every write is refused from now on; put the file back or restore it from a backup, "
                "then restart authserver",
                problem,
                self.path,
            )
        raise StoreUnavailableError(f"database unavailable: {problem}")

    def _shm_intact(self) -> None:
        """Before each use: a shared-memory file shorter than SQLite mapped it (truncated by something
        outside SQLite) kills the process with SIGBUS at the next access to the mapping. Its size is
        put back instead (SQLite then rebuilds the index from the WAL) and the log says so.

        :raises StoreUnavailableError: (503) it could not be put back: the database is not touched again.
        """
        if self._shm_lost is not None:
            raise StoreUnavailableError(f"database unavailable: {self._shm_lost}")
        if self.path == ":memory:":
            return
        try:
            st = os.stat(self.shm)
        except OSError:
            return  # none yet, or deleted (the mapping of a deleted file stays valid)
        seen, size = self._mapped
        inode = (st.st_dev, st.st_ino)
        if seen == inode and st.st_size < size:
            self._restore_shm(st.st_size, size)
        self._mapped = (inode, max(st.st_size, size) if seen == inode else st.st_size)

    def _restore_shm(self, found: int, size: int) -> None:
        log.error(
            "the database's shared-memory file %s was truncated (%d bytes, %d mapped) by something outside"
            " authserver: its size is restored (SQLite rebuilds the index from the WAL); find what truncates it",
            self.shm,
            found,
            size,
        )
        try:
            os.truncate(self.shm, size)
        except OSError as exc:
            self._shm_lost = (
                "the database's shared-memory file was truncated and cannot be restored: restart authserver"
            )
            log.error("cannot restore %s (%s): every request that needs the database gets 503", self.shm, exc)
            raise StoreUnavailableError(f"database unavailable: {self._shm_lost}") from None

    def close(self) -> None:
        if self._shm_lost is not None:
            # NOTE: closing (or collecting, even at exit) would checkpoint through the broken mapping:
            # SIGBUS. The connections are leaked on purpose, never freed; the WAL holds every commit.
            import ctypes  # only on this path

            for conn in {id(c): c for c in (self._conn, self._reader)}.values():
                ctypes.pythonapi.Py_IncRef(ctypes.py_object(conn))
            return
        with self._lock:
            self._conn.close()
        if self._reader is not self._conn:
            with self._read_lock:
                self._reader.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._read_lock, _available():
            self._shm_intact()
            return self._reader.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._read_lock, _available():
            self._shm_intact()
            row: tuple[Any, ...] | None = self._reader.execute(sql, params).fetchone()
            return row

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction."""
        with self._lock, _available():
            self._shm_intact()
            self._writable()
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                # NOTE: SQLite has already rolled back after some errors (SQLITE_FULL, SQLITE_IOERR):
                # a second ROLLBACK would fail and hide the real error.
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement; returns the number of rows changed."""
        with self._lock, _available():
            self._shm_intact()
            if not sql.lstrip().upper().startswith("PRAGMA"):
                self._writable()
            changed: int = self._conn.execute(sql, params).rowcount
            return changed


def copy_database(source: str, target: str, *, self_contained: bool = True) -> int:
    """Copy the SQLite database ``source`` into ``target`` through SQLite's online backup API: a
    consistent copy even while other connections (a running service) write ``source``.

    :param self_contained: leave ``target`` one file (rollback journal, no ``-wal`` beside it): a backup.
    :returns: the schema version ``source`` records.
    :raises DatabaseError: either file cannot be opened, or ``source`` is not an authserver database
        (then ``target`` is left untouched).
    """
    try:
        src = sqlite3.connect(f"{Path(source).resolve().as_uri()}?mode=ro", uri=True)
        try:
            version = _recorded_version(src)
            if version is None:
                raise DatabaseError(f"{source} is not an authserver database (no schema_version table)")
            dst = sqlite3.connect(target, isolation_level=None)
            try:
                src.backup(dst)
                if self_contained:
                    dst.execute("PRAGMA journal_mode = DELETE")
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot copy {source} to {target}: {exc}") from None
    return version


def _recorded_version(conn: sqlite3.Connection) -> int | None:
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    row = conn.execute(SQL.schema_version).fetchone() if "schema_version" in tables else None
    return int(row[0]) if row is not None and row[0] is not None else None


def file_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``; None for an in-memory database or a missing file."""
    if path == ":memory:":
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


@contextmanager
def _available() -> Iterator[None]:
    """A locked or unreachable database is a temporary condition for clients (503, they retry)."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StoreUnavailableError(f"database unavailable: {exc}") from None


def _user(row: Sequence[Any]) -> UserRecord:
    return UserRecord(row[0], row[1], row[2], bool(row[3]), row[4])


def _queue(conn: sqlite3.Connection, revoke: QueuedRevocations | None) -> None:
    """Put ``revoke``'s rows in the outbox, inside the caller's transaction."""
    if revoke is not None and revoke.rows:
        at = revoke.at
        conn.executemany(
            SQL.queue_revocation,
            [(r.key_name, r.target, r.issued_before, int(r.reauth), r.reason, at, at) for r in revoke.rows],
        )


def _end_sessions(conn: sqlite3.Connection, where: str, params: Sequence[Any], reason: str) -> None:
    """Delete the sessions ``where`` selects, remembering why, inside the caller's transaction."""
    conn.execute(SQL.end_sessions.format(where=where), (reason, *params))
    conn.execute(SQL.delete_sessions.format(where=where), params)


async def _write(call: Callable[[], T]) -> T:
    """Writes may wait for another process's lock (``busy_timeout``): never on the event loop."""
    return await anyio.to_thread.run_sync(call)


class SqliteUsers:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, username: str) -> UserRecord | None:
        row = self.db.query_one(SQL.user_by_name, (username,))
        return None if row is None else _user(row)

    async def by_client_id(self, client_id: str) -> UserRecord | None:
        row = self.db.query_one(SQL.user_by_client_id, (client_id,))
        return None if row is None else _user(row)

    async def all(self) -> list[UserRecord]:
        return [_user(row) for row in self.db.query(SQL.all_users)]

    async def insert(self, user: UserRecord, *, created: float) -> bool:
        def insert() -> bool:
            names = (user.username, user.username, user.client_id, user.client_id)
            try:
                with self.db.transaction() as conn:
                    taken = conn.execute(
                        SQL.name_taken,
                        names,
                    ).fetchone()
                    if taken:
                        return False
                    conn.execute(
                        SQL.insert_user,
                        (user.username, user.client_id, user.role, user.password_hash, int(user.disabled), created),
                    )
            except sqlite3.IntegrityError:
                return False
            return True

        return await _write(insert)

    def _update(self, sql: str, params: Sequence[Any], revoke: QueuedRevocations | None) -> bool:
        """One account change and its revocations, in one transaction (neither without the other)."""
        with self.db.transaction() as conn:
            changed = conn.execute(sql, params).rowcount > 0
            if changed:
                _queue(conn, revoke)
        return changed

    async def set_role(self, username: str, role: str, *, revoke: QueuedRevocations | None = None) -> bool:
        sql = SQL.set_role
        return await _write(lambda: self._update(sql, (role, username), revoke))

    async def set_disabled(self, username: str, disabled: bool, *, revoke: QueuedRevocations | None = None) -> bool:
        sql = SQL.set_disabled
        return await _write(lambda: self._update(sql, (int(disabled), username), revoke))

    async def set_password_hash(
        self, username: str, password_hash: str, *, end_sessions: bool, revoke: QueuedRevocations | None = None
    ) -> bool:
        def update() -> bool:
            with self.db.transaction() as conn:
                changed = conn.execute(SQL.password_hash, (password_hash, username)).rowcount
                if changed and end_sessions:
                    _end_sessions(conn, "username = ? AND source = 'account'", (username,), ENDED_PASSWORD)
                if changed:
                    _queue(conn, revoke)
            return bool(changed)

        return await _write(update)

    async def delete(self, username: str, *, revoke: QueuedRevocations | None = None) -> bool:
        def delete() -> bool:
            with self.db.transaction() as conn:
                changed = conn.execute(SQL.delete_user, (username,)).rowcount
                _end_sessions(conn, "username = ? AND source = 'account'", (username,), ENDED_REMOVED)
                if changed:
                    _queue(conn, revoke)
            return bool(changed)

        return await _write(delete)


class SqliteSessions:
    #: ``lookup`` never suspends (a WAL read on the event loop): callers may await it in line.
    reads_inline = True

    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(
        self,
        id_hash: str,
        *,
        subject: str,
        client_id: str,
        role: str,
        source: str,
        expires: float,
        now: float,
        sid: str | None = None,
    ) -> None:
        def insert() -> None:
            with self.db.transaction() as conn:
                conn.execute(SQL.expire_sessions, (now,))
                conn.execute(SQL.expire_ended, (now,))
                conn.execute(SQL.expire_session_sids, (now,))
                conn.execute(
                    SQL.insert_session,
                    (id_hash, subject, client_id, role, source, expires),
                )
                if sid is not None:
                    conn.execute(SQL.insert_session_sid, (id_hash, sid, expires))

        await _write(insert)

    def _end(self, where: str, params: Sequence[Any], reason: str, revoke: QueuedRevocations | None) -> None:
        with self.db.transaction() as conn:
            _end_sessions(conn, where, params, reason)
            _queue(conn, revoke)

    async def delete(self, id_hash: str, *, reason: str, revoke: QueuedRevocations | None = None) -> None:
        await _write(lambda: self._end("id_hash = ?", (id_hash,), reason, revoke))

    async def delete_subject(
        self, subject: str, source: str, *, reason: str, revoke: QueuedRevocations | None = None
    ) -> None:
        await _write(lambda: self._end("username = ? AND source = ?", (subject, source), reason, revoke))

    async def ended(self, id_hash: str, *, now: float) -> str | None:
        row = self.db.query_one(SQL.ended_reason, (id_hash, now))
        return None if row is None else str(row[0])

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

    async def of_subject(self, subject: str, source: str, *, now: float) -> list[SessionSummary]:
        rows = self.db.query(SQL.sessions_of, (subject, source, now))
        return [SessionSummary(r[0], r[1], r[2], r[3], float(r[4])) for r in rows]


class SqliteLogouts:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(self, token_id: str, *, expires: float, now: float) -> bool:
        def claim() -> bool:
            with self.db.transaction() as conn:
                conn.execute(SQL.expire_seen_ids, (now,))
                return bool(conn.execute(SQL.claim_seen_id, (token_id, expires)).rowcount)

        return await _write(claim)

    async def release(self, token_id: str) -> None:
        await _write(lambda: self.db.execute(SQL.release_seen_id, (token_id,)))

    async def sessions(self, logout: UpstreamLogout) -> list[tuple[str, str]]:
        where, params = logout_where(logout, "?")
        rows = self.db.query(SQL.logout_sessions.format(where=where), params)
        return [(str(r[0]), str(r[1])) for r in rows]

    async def log_out(self, logout: UpstreamLogout, *, now: float, revoke: QueuedRevocations | None = None) -> int:
        where, params = logout_where(logout, "?")

        def log_out() -> int:
            with self.db.transaction() as conn:
                conn.execute(SQL.expire_logouts, (now,))
                conn.executemany(SQL.record_logout, logout_rows(logout))
                ended = conn.execute(SQL.logout_sessions.format(where=where), params).fetchall()
                _end_sessions(conn, where, params, ENDED_PROVIDER)
                _queue(conn, revoke)
            return len(ended)

        return await _write(log_out)

    async def cutoffs(self, issuer: str, sub: str | None, sid: str | None, *, now: float) -> list[tuple[str, float]]:
        rows = self.db.query(SQL.logout_cutoffs, (issuer, now, sub, sid))
        return [(str(r[0]), float(r[1])) for r in rows]


_OUTBOX_COLUMNS = "key_name, target, issued_before, reauth, reason, id, attempts"


class SqliteOutbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, items: list[PendingRevocation], *, now: float) -> None:
        def add() -> None:
            with self.db.transaction() as conn:
                _queue(conn, QueuedRevocations(tuple(items), now))

        await _write(add)

    async def claim(self, *, now: float, limit: int, lease: float) -> list[PendingRevocation]:
        def claim() -> list[PendingRevocation]:
            with self.db.transaction() as conn:
                rows = conn.execute(
                    f"SELECT {_OUTBOX_COLUMNS} FROM revocation_outbox WHERE next_attempt <= ?"  # noqa: S608
                    " ORDER BY id LIMIT ?",
                    (now, limit),
                ).fetchall()
                conn.executemany(
                    "UPDATE revocation_outbox SET next_attempt = ? WHERE id = ?", [(now + lease, r[5]) for r in rows]
                )
            return [PendingRevocation(r[0], r[1], int(r[2]), bool(r[3]), r[4], int(r[5]), int(r[6])) for r in rows]

        return await _write(claim)

    async def done(self, ids: list[int]) -> None:
        def done() -> None:
            with self.db.transaction() as conn:
                conn.executemany("DELETE FROM revocation_outbox WHERE id = ?", [(i,) for i in ids])

        await _write(done)

    async def retry(self, ids: list[int], *, next_attempt: float) -> None:
        def retry() -> None:
            with self.db.transaction() as conn:
                conn.executemany(
                    "UPDATE revocation_outbox SET attempts = attempts + 1, next_attempt = ? WHERE id = ?",
                    [(next_attempt, i) for i in ids],
                )

        await _write(retry)

    async def pending(self) -> int:
        row = self.db.query_one(SQL.outbox_count)
        return int(row[0]) if row is not None else 0

    async def state(self, *, now: float) -> OutboxState:
        row = self.db.query_one(SQL.outbox_state, (now,))
        assert row is not None  # an aggregate always answers one row
        return outbox_state(row)


class SqliteAdminKeys:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, key: AdminKeyRecord) -> bool:
        def insert() -> bool:
            try:
                self.db.execute(SQL.insert_admin_key, (key.key_id, key.name, key.key_hash, key.created))
            except sqlite3.IntegrityError:
                return False
            return True

        return await _write(insert)

    async def by_id(self, key_id: str) -> AdminKeyRecord | None:
        row = self.db.query_one(SQL.admin_key_by_id, (key_id,))
        return None if row is None else admin_key(row)

    async def all(self) -> list[AdminKeyRecord]:
        return [admin_key(row) for row in self.db.query(SQL.all_admin_keys)]

    async def revoke(self, name: str, *, now: float) -> bool:
        return await _write(lambda: self.db.execute(SQL.revoke_admin_key, (now, name, name)) > 0)

    async def touch(self, key_id: str, *, now: float, older_than: float) -> None:
        await _write(lambda: self.db.execute(SQL.touch_admin_key, (now, key_id, older_than)))

    async def exists(self) -> bool:
        return self.db.query_one(SQL.any_admin_key) is not None


class SqliteStorage:
    """Accounts, sessions and the revocation outbox in one SQLite file (``:memory:`` for a throwaway database)."""

    engine = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self.db = Database(path)
        self.users = SqliteUsers(self.db)
        self.sessions = SqliteSessions(self.db)
        self.outbox = SqliteOutbox(self.db)
        self.logouts = SqliteLogouts(self.db)
        self.admin_keys = SqliteAdminKeys(self.db)
        self.description = "in memory" if path == ":memory:" else path
        self._prepare()

    def _prepare(self) -> None:
        """An empty file gets the current schema at once (as SQLite's "created on first use" promises);
        a file made before versions were recorded is adopted (its tables are version 1's)."""
        found = self._version()
        if found is None:
            self._migrate(pending(0))
        elif found == 0 and not self._tables() >= {"schema_version"}:
            self._migrate([1])  # IF NOT EXISTS: the tables are already version 1's

    async def version(self) -> int | None:
        return self._version()

    def _tables(self) -> set[str]:
        return {row[0] for row in self.db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _version(self) -> int | None:
        """The recorded schema version; 0 for a file made before versions were recorded; None when empty."""
        tables = self._tables()
        if "schema_version" in tables:
            row = self.db.query_one(SQL.schema_version)
            return int(row[0]) if row is not None and row[0] is not None else 0
        return 0 if "users" in tables else None

    def _migrate(self, versions: list[int]) -> None:
        with self.db.transaction() as conn:
            conn.execute(VERSION_TABLE)
            for version in versions:
                for statement in MIGRATIONS[version]["sqlite"]:
                    conn.execute(statement)
            conn.execute(SQL.clear_version)
            conn.execute(SQL.record_version, (max(versions),))

    async def open(self) -> None:
        """Create an empty database's schema (and adopt a pre-version file, whose tables are version 1's).

        :raises DatabaseError: an older schema (run ``authserver db upgrade``), a newer or unknown one.
        """
        await _write(self._prepare)
        found = await self.version()
        require_current(found if found is not None else -1, self.description)

    async def upgrade(self) -> list[int]:
        """Apply the migrations this database lacks; returns the versions applied."""
        found = await self.version() or 0
        versions = pending(found)
        if versions:
            await _write(lambda: self._migrate(versions))
        return versions

    async def ready(self) -> str | None:
        """Why this database cannot serve now (file gone or replaced, schema not current), or None.
        NOTE: never the file's path (readiness answers go to whoever asks); the log names it."""
        if self.path != ":memory:":
            problem = self.db.file_problem()
            if problem is not None:
                return problem
            if not os.access(self.path, os.W_OK):
                return "the database file is not writable"
            if os.path.exists(self.db.shm) and not os.access(self.db.shm, os.W_OK):
                return "the database's shared-memory file (-shm) is not writable"
        try:
            found = await self.version()
        except (DatabaseError, UnavailableError) as exc:
            return exc.message.replace(self.path, "the database file") if self.path != ":memory:" else exc.message
        return schema_problem(found if found is not None else -1, "SQLite")

    async def close(self) -> None:
        self.db.close()
