"""Login sessions: a random id in a signed cookie, the server-side record in the database.

The cookie carries ``itsdangerous``-signed random bytes; only their SHA-256 is stored, so a copy of
the database does not hand out live sessions. Logging out deletes the record, which ends the
session everywhere. Sessions are re-checked when they are resolved:

- an account session follows its account: disabled -> 403, removed -> 401, a new role or clientId
  applies to the next token; changing the password ends its sessions (disabling keeps them, so that
  clients get the final 403 rather than a 401 they would retry);
- a demo session ends (401) once demo login is off, and once its name or clientId belongs to an
  account, so a demo login can never become an account's identity.

Resolving a session is on the hot path of ``/auth``, so a resolved session is remembered for
``recheck`` seconds (default 1). Any change that can end or alter a session, made through this
process's database, invalidates the memory at once; a change made by another process (the
``authserver users`` CLI) is seen within ``recheck`` seconds.
"""

from __future__ import annotations

import hashlib
import secrets

from itsdangerous import BadSignature, Signer

from ..database import Database
from ..errors import ForbiddenError, NotAuthenticatedError
from . import Credentials, Identity

COOKIE_NAME = "authserver_session"
_CACHE_LIMIT = 10_000


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


class SessionStore:
    """Creates, resolves and ends sessions. Also the :class:`Authenticator` for session cookies."""

    def __init__(self, db: Database, secret: str, *, ttl: int, demo_login: bool = False, recheck: float = 1.0) -> None:
        self.db = db
        self.ttl = ttl
        self.demo_login = demo_login
        self.recheck = recheck
        self._signer = Signer(secret, salt="authserver.session")
        # cookie -> (identity, session expiry, checked at, db generation)
        self._resolved: dict[str, tuple[Identity, float, float, int]] = {}

    def create(self, identity: Identity, now: float) -> str:
        """Store a session for ``identity`` and return the cookie value."""
        session_id = secrets.token_urlsafe(32)
        expires = now + self.ttl
        # A new session changes nothing any remembered session depends on: no invalidation.
        with self.db.transaction(invalidates=False) as conn:
            conn.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
            conn.execute(
                "INSERT INTO sessions (id_hash, username, client_id, role, source, expires) VALUES (?, ?, ?, ?, ?, ?)",
                (_hash(session_id), identity.subject, identity.client_id, identity.role, identity.source, expires),
            )
        return self._signer.sign(session_id).decode("ascii")

    def _session_id(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            return self._signer.unsign(cookie).decode("ascii")
        except (BadSignature, UnicodeError):
            return None

    def end(self, cookie: str | None) -> None:
        session_id = self._session_id(cookie)
        if session_id is not None:
            self.db.execute("DELETE FROM sessions WHERE id_hash = ?", (_hash(session_id),))

    def remembered(self, credentials: Credentials, now: float) -> Identity | None:
        """The identity of a session resolved less than ``recheck`` seconds ago, from memory only."""
        cookie = credentials.cookies.get(COOKIE_NAME)
        if cookie is None:
            return None
        entry = self._resolved.get(cookie)
        if entry is None:
            return None
        identity, expires, checked, generation = entry
        if now < expires and 0 <= now - checked < self.recheck and generation == self.db.generation:
            return identity
        self._resolved.pop(cookie, None)
        return None

    def authenticate(self, credentials: Credentials, now: float) -> Identity | None:
        """Resolve the session cookie.

        :returns: ``None`` when there is no session cookie at all.
        :raises NotAuthenticatedError: a cookie that is forged, unknown or expired, an account that
            was removed, a demo session that may no longer be used.
        :raises ForbiddenError: a session of an account that has since been disabled.
        """
        cookie = credentials.cookies.get(COOKIE_NAME)
        if cookie is None:
            return None
        identity = self.remembered(credentials, now)
        if identity is not None:
            return identity
        generation = self.db.generation  # read before the query: a concurrent change forces a recheck
        identity, expires = self._resolve(cookie, now)
        if len(self._resolved) >= _CACHE_LIMIT:
            self._resolved.clear()
        self._resolved[cookie] = (identity, expires, now, generation)
        return identity

    def _resolve(self, cookie: str, now: float) -> tuple[Identity, float]:
        session_id = self._session_id(cookie)
        if session_id is None:
            raise NotAuthenticatedError("session is not valid; log in again")
        row = self.db.query_one(
            "SELECT s.username, s.client_id, s.role, s.source, s.expires, u.client_id, u.role, u.disabled,"
            " (SELECT COUNT(*) FROM users a WHERE a.username IN (s.username, s.client_id)"
            "  OR a.client_id IN (s.username, s.client_id))"
            " FROM sessions s LEFT JOIN users u ON s.source = 'account' AND u.username = s.username"
            " WHERE s.id_hash = ?",
            (_hash(session_id),),
        )
        if row is None:
            raise NotAuthenticatedError("session has ended; log in again")
        username, client_id, role, source, expires, user_client_id, user_role, disabled, accounts = row
        if expires <= now:  # the record goes with the next login's clean-up (reads only here)
            raise NotAuthenticatedError("session has expired; log in again")
        if source == "account":
            if user_client_id is None:
                raise NotAuthenticatedError("account no longer exists; log in again")
            if disabled:
                raise ForbiddenError("account is disabled")
            client_id, role = user_client_id, user_role
        elif not self.demo_login or accounts:
            raise NotAuthenticatedError("demo session has ended; log in again")
        return Identity(subject=username, client_id=client_id, role=role, source=source), expires
