"""The PostgreSQL engine: psycopg 3 with its async connection pool; nothing blocks the event loop.

``DATABASE_URL=postgresql://user:password@host:port/database`` (any libpq URI parameters, such as
``sslmode``, pass through). The URL's password never appears in :attr:`PostgresStorage.description`
or in an error message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from authserver.errors import DatabaseError, StoreUnavailableError, UnavailableError
from authserver.storage import (
    ENDED_PASSWORD,
    ENDED_PROVIDER,
    ENDED_REMOVED,
    PendingRevocation,
    QueuedRevocations,
    SessionRecord,
    UpstreamLogout,
    UserRecord,
    logout_rows,
    logout_where,
)
from authserver.storage.breaker import PROBE_INTERVAL, Breaker
from authserver.storage.schema import MIGRATIONS, VERSION_TABLE, pending, require_current, schema_problem
from authserver.storage.statements import POSTGRES as SQL

log = logging.getLogger("authserver.storage")

#: Serialises schema changes and account inserts (the username/clientId cross-check) across instances.
_SCHEMA_LOCK = 7_406_801
_ACCOUNTS_LOCK = 7_406_802


def safe_url(url: str) -> str:
    """``url`` without its password (and query), for logs and messages."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def _user(row: Sequence[Any]) -> UserRecord:
    return UserRecord(row[0], row[1], row[2], bool(row[3]), row[4])


async def _queue(conn: psycopg.AsyncConnection[Any], revoke: QueuedRevocations | None) -> None:
    """Put ``revoke``'s rows in the outbox, inside the caller's transaction."""
    if revoke is not None and revoke.rows:
        at = revoke.at
        async with conn.cursor() as cur:
            await cur.executemany(
                SQL.queue_revocation,
                [(r.key_name, r.target, r.issued_before, r.reauth, r.reason, at, at) for r in revoke.rows],
            )


async def _end_sessions(conn: psycopg.AsyncConnection[Any], where: str, params: Sequence[Any], reason: str) -> None:
    """Delete the sessions ``where`` selects, remembering why, inside the caller's transaction."""
    await conn.execute(SQL.end_sessions.format(where=where).encode(), (reason, *params))
    await conn.execute(SQL.delete_sessions.format(where=where).encode(), params)


class PostgresStorage:
    """Accounts and sessions in PostgreSQL, through a pool of ``min_size``..``max_size`` connections.

    ``timeout``: connecting (at start and when probing); ``wait``: the longest a call waits for a pooled
    connection before its 503. A call that finds the server gone (its connection cut, or no connection
    within ``wait`` while nobody else got one either) opens the :class:`Breaker`: from then on calls
    are refused at once until a probe (every ``probe_interval`` s) connects, which also replaces the
    pool (whose own reconnection attempts back off for minutes) with fresh connections.
    """

    engine = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        wait: float = 0.5,
        probe_interval: float = PROBE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.description = safe_url(url)
        self.timeout = timeout
        self.wait = wait
        self.clock = clock
        self._sizes = (min_size, max_size)
        self.pool = self._new_pool()
        self.breaker = Breaker(self._reconnect, description=self.description, interval=probe_interval, clock=clock)
        self.users = PostgresUsers(self)
        self.sessions = PostgresSessions(self)
        self.outbox = PostgresOutbox(self)
        self.logouts = PostgresLogouts(self)
        self._opened = False
        #: When a call last got a connection: a wait that ends with none while others got one is a busy pool.
        self._served_at = 0.0
        #: Pools replaced after an outage, still closing.
        self._retiring: set[asyncio.Future[None]] = set()

    def _new_pool(self) -> AsyncConnectionPool[Any]:
        return AsyncConnectionPool(
            self.url,
            min_size=self._sizes[0],
            max_size=self._sizes[1],
            timeout=self.wait,
            open=False,
            kwargs=self._connection_options(),
            name="authserver",
        )

    def _connection_options(self) -> dict[str, Any]:
        """libpq options of every connection: a server that stops answering in the middle of a call (a
        network partition, a host gone without a reset) breaks the connection within about ``timeout``
        seconds, and the call fails with a 503, instead of waiting for the kernel's retransmissions
        (15 minutes or more). ``tcp_user_timeout`` bounds a request nobody acknowledges; keepalives
        find an idle connection whose server is gone."""
        seconds = max(2, int(self.timeout))  # libpq counts connect_timeout in whole seconds, at least 2
        return {
            "autocommit": True,
            "connect_timeout": seconds,
            "tcp_user_timeout": seconds * 1000,
            "keepalives": 1,
            "keepalives_idle": seconds,
            "keepalives_interval": 1,
            "keepalives_count": 3,
        }

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection; an unreachable server or an exhausted pool is a 503 (clients retry).

        :raises StoreUnavailableError: at once while the breaker is open.
        """
        self.breaker.check()
        started = self.clock()
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            async with self.pool.connection() as conn:
                self._served_at = self.clock()
                yield conn
        except PoolTimeout:
            if self._served_at < started:  # nobody got a connection while this call waited: the server is gone
                self.breaker.trip(f"no connection within {self.wait:g} s")
            raise StoreUnavailableError("database unavailable: no connection within the timeout") from None
        except psycopg.OperationalError as exc:
            if conn is not None and conn.broken:
                self.breaker.trip(_first_line(exc))
            raise StoreUnavailableError(f"database unavailable: {_first_line(exc)}") from None

    async def _reconnect(self) -> None:
        """The breaker's probe: connect once; when that works, a fresh pool takes the old one's place.

        :raises psycopg.Error: the server does not answer yet.
        """
        async with await psycopg.AsyncConnection.connect(self.url, **self._connection_options()) as probe:
            await probe.execute("SELECT 1")
        pool = self._new_pool()
        try:
            await pool.open(wait=True, timeout=self.timeout)
        except BaseException:
            await pool.close()
            raise
        old, self.pool = self.pool, pool
        # Closed in the background: it may wait for a connection attempt of its own (up to ``timeout``).
        # Its calls still waiting get PoolClosed (a 503); its connections in use close when returned.
        retiring = asyncio.ensure_future(old.close())
        self._retiring.add(retiring)
        retiring.add_done_callback(self._retiring.discard)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self.connection() as conn:
            cur = await conn.execute(sql, params)
            return cur.rowcount

    async def _connect(self) -> None:
        if self._opened:
            return
        try:
            await self.pool.open(wait=True, timeout=self.timeout)
        except PoolTimeout:
            await self.pool.close()
            raise DatabaseError(f"cannot connect to the database ({self.description})") from None
        self._opened = True

    async def version(self) -> int | None:
        await self._connect()
        rows = await self.fetch("SELECT to_regclass('schema_version') IS NOT NULL, to_regclass('users') IS NOT NULL")
        has_version, has_users = rows[0]
        if not has_version:
            return 0 if has_users else None
        found = await self.fetch(SQL.schema_version)
        return int(found[0][0]) if found and found[0][0] is not None else 0

    async def _migrate(self, versions: list[int]) -> None:
        async with self.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            await conn.execute(VERSION_TABLE)
            cur = await conn.execute(SQL.schema_version)
            row = await cur.fetchone()
            done = int(row[0]) if row is not None and row[0] is not None else 0
            todo = [version for version in versions if version > done]
            for version in todo:
                for statement in MIGRATIONS[version]["postgresql"]:
                    await conn.execute(statement)
            if todo:
                await conn.execute(SQL.clear_version)
                await conn.execute(SQL.record_version, (max(todo),))

    async def open(self) -> None:
        try:
            found = await self.version()
            if found is None:
                await self._migrate(pending(0))
                found = await self.version()
            require_current(found if found is not None else -1, self.description)
        except BaseException:
            await self.close()
            raise

    async def upgrade(self) -> list[int]:
        versions = pending(await self.version() or 0)
        if versions:
            await self._migrate(versions)
        return versions

    async def ready(self) -> str | None:
        try:
            found = await self.version()
        except (DatabaseError, UnavailableError) as exc:
            return exc.message
        return schema_problem(found if found is not None else -1, self.description)

    async def close(self) -> None:
        await self.breaker.close()
        await asyncio.gather(*self._retiring)
        await self.pool.close()
        self._opened = False


class PostgresUsers:
    def __init__(self, store: PostgresStorage) -> None:
        self.store = store

    async def get(self, username: str) -> UserRecord | None:
        rows = await self.store.fetch(SQL.user_by_name, (username,))
        return _user(rows[0]) if rows else None

    async def by_client_id(self, client_id: str) -> UserRecord | None:
        rows = await self.store.fetch(SQL.user_by_client_id, (client_id,))
        return _user(rows[0]) if rows else None

    async def all(self) -> list[UserRecord]:
        return [_user(row) for row in await self.store.fetch(SQL.all_users)]

    async def insert(self, user: UserRecord, *, created: float) -> bool:
        names = (user.username, user.username, user.client_id, user.client_id)
        try:
            async with self.store.connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ACCOUNTS_LOCK,))
                cur = await conn.execute(
                    SQL.name_taken,
                    names,
                )
                if await cur.fetchone() is not None:
                    return False
                await conn.execute(
                    SQL.insert_user,
                    (user.username, user.client_id, user.role, user.password_hash, user.disabled, created),
                )
        except psycopg.errors.UniqueViolation:
            return False
        return True

    async def _update(self, sql: str, params: Sequence[Any], revoke: QueuedRevocations | None) -> bool:
        """One account change and its revocations, in one transaction (neither without the other)."""
        async with self.store.connection() as conn, conn.transaction():
            cur = await conn.execute(sql, params)
            changed = cur.rowcount > 0
            if changed:
                await _queue(conn, revoke)
        return changed

    async def set_role(self, username: str, role: str, *, revoke: QueuedRevocations | None = None) -> bool:
        return await self._update(SQL.set_role, (role, username), revoke)

    async def set_disabled(self, username: str, disabled: bool, *, revoke: QueuedRevocations | None = None) -> bool:
        return await self._update(SQL.set_disabled, (disabled, username), revoke)

    async def set_password_hash(
        self, username: str, password_hash: str, *, end_sessions: bool, revoke: QueuedRevocations | None = None
    ) -> bool:
        async with self.store.connection() as conn, conn.transaction():
            cur = await conn.execute(SQL.password_hash, (password_hash, username))
            changed = cur.rowcount > 0
            if changed and end_sessions:
                await _end_sessions(conn, "username = %s AND source = 'account'", (username,), ENDED_PASSWORD)
            if changed:
                await _queue(conn, revoke)
        return changed

    async def delete(self, username: str, *, revoke: QueuedRevocations | None = None) -> bool:
        async with self.store.connection() as conn, conn.transaction():
            cur = await conn.execute(SQL.delete_user, (username,))
            changed = cur.rowcount > 0
            await _end_sessions(conn, "username = %s AND source = 'account'", (username,), ENDED_REMOVED)
            if changed:
                await _queue(conn, revoke)
        return changed


class PostgresSessions:
    def __init__(self, store: PostgresStorage) -> None:
        self.store = store

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
        async with self.store.connection() as conn, conn.transaction():
            await conn.execute(SQL.expire_sessions, (now,))
            await conn.execute(SQL.expire_ended, (now,))
            await conn.execute(SQL.expire_session_sids, (now,))
            await conn.execute(
                SQL.insert_session,
                (id_hash, subject, client_id, role, source, expires),
            )
            if sid is not None:
                await conn.execute(SQL.insert_session_sid, (id_hash, sid, expires))

    async def _end(self, where: str, params: Sequence[Any], reason: str, revoke: QueuedRevocations | None) -> None:
        async with self.store.connection() as conn, conn.transaction():
            await _end_sessions(conn, where, params, reason)
            await _queue(conn, revoke)

    async def delete(self, id_hash: str, *, reason: str, revoke: QueuedRevocations | None = None) -> None:
        await self._end("id_hash = %s", (id_hash,), reason, revoke)

    async def delete_subject(
        self, subject: str, source: str, *, reason: str, revoke: QueuedRevocations | None = None
    ) -> None:
        await self._end("username = %s AND source = %s", (subject, source), reason, revoke)

    async def ended(self, id_hash: str, *, now: float) -> str | None:
        rows = await self.store.fetch(SQL.ended_reason, (id_hash, now))
        return str(rows[0][0]) if rows else None

    async def lookup(self, id_hash: str) -> SessionRecord | None:
        rows = await self.store.fetch(
            "SELECT s.username, s.client_id, s.role, s.source, s.expires,"
            " u.username, u.client_id, u.role, u.disabled, u.password_hash,"
            " EXISTS (SELECT 1 FROM users a WHERE a.username IN (s.username, s.client_id)"
            "  OR a.client_id IN (s.username, s.client_id))"
            " FROM sessions s LEFT JOIN users u ON s.source = 'account' AND u.username = s.username"
            " WHERE s.id_hash = %s",
            (id_hash,),
        )
        if not rows:
            return None
        row = rows[0]
        account = None if row[5] is None else _user(row[5:10])
        return SessionRecord(row[0], row[1], row[2], row[3], float(row[4]), account, bool(row[10]))


class PostgresLogouts:
    def __init__(self, store: PostgresStorage) -> None:
        self.store = store

    async def claim(self, token_id: str, *, expires: float, now: float) -> bool:
        async with self.store.connection() as conn, conn.transaction():
            await conn.execute(SQL.expire_seen_ids, (now,))
            cur = await conn.execute(SQL.claim_seen_id, (token_id, expires))
            return cur.rowcount > 0

    async def release(self, token_id: str) -> None:
        await self.store.execute(SQL.release_seen_id, (token_id,))

    async def sessions(self, logout: UpstreamLogout) -> list[tuple[str, str]]:
        where, params = logout_where(logout, "%s")
        rows = await self.store.fetch(SQL.logout_sessions.format(where=where), params)
        return [(str(r[0]), str(r[1])) for r in rows]

    async def log_out(self, logout: UpstreamLogout, *, now: float, revoke: QueuedRevocations | None = None) -> int:
        where, params = logout_where(logout, "%s")
        async with self.store.connection() as conn, conn.transaction():
            await conn.execute(SQL.expire_logouts, (now,))
            async with conn.cursor() as cur:
                await cur.executemany(SQL.record_logout, logout_rows(logout))
            found = await conn.execute(SQL.logout_sessions.format(where=where).encode(), params)
            ended = len(await found.fetchall())
            await _end_sessions(conn, where, params, ENDED_PROVIDER)
            await _queue(conn, revoke)
        return ended

    async def cutoffs(self, issuer: str, sub: str | None, sid: str | None, *, now: float) -> list[tuple[str, float]]:
        rows = await self.store.fetch(SQL.logout_cutoffs, (issuer, now, sub, sid))
        return [(str(r[0]), float(r[1])) for r in rows]


class PostgresOutbox:
    def __init__(self, store: PostgresStorage) -> None:
        self.store = store

    async def add(self, items: list[PendingRevocation], *, now: float) -> None:
        async with self.store.connection() as conn, conn.transaction():
            await _queue(conn, QueuedRevocations(tuple(items), now))

    async def claim(self, *, now: float, limit: int, lease: float) -> list[PendingRevocation]:
        # SKIP LOCKED: several instances claim disjoint rows.
        rows = await self.store.fetch(
            "UPDATE revocation_outbox SET next_attempt = %s WHERE id IN (SELECT id FROM revocation_outbox"
            " WHERE next_attempt <= %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
            " RETURNING key_name, target, issued_before, reauth, reason, id, attempts",
            (now + lease, now, limit),
        )
        rows.sort(key=lambda r: int(r[5]))
        return [PendingRevocation(r[0], r[1], int(r[2]), bool(r[3]), r[4], int(r[5]), int(r[6])) for r in rows]

    async def done(self, ids: list[int]) -> None:
        await self.store.execute("DELETE FROM revocation_outbox WHERE id = ANY(%s)", (ids,))

    async def retry(self, ids: list[int], *, next_attempt: float) -> None:
        await self.store.execute(
            "UPDATE revocation_outbox SET attempts = attempts + 1, next_attempt = %s WHERE id = ANY(%s)",
            (next_attempt, ids),
        )

    async def pending(self) -> int:
        rows = await self.store.fetch(SQL.outbox_count)
        return int(rows[0][0])


def _first_line(exc: BaseException) -> str:
    """The first line of a driver error (never the connection string)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
