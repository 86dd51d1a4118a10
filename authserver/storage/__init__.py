"""The storage layer: accounts and sessions behind small protocols, one implementation per engine.

Every SQL statement of the service lives in this package; :mod:`authserver.identity` works with the
records and protocols below only. The engines:

- :mod:`authserver.storage.sqlite`: one SQLite file (the default, nothing to install);
- :mod:`authserver.storage.postgres`: PostgreSQL through psycopg 3's async connection pool.

Schema versions are managed by :mod:`authserver.storage.schema`, shared by both engines.

Methods are coroutines: an engine with a network round trip awaits it, SQLite runs its writes in a
worker thread. Nothing here knows about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class UserRecord:
    """An account as stored: ``password_hash`` is an argon2id PHC string (never in a repr)."""

    username: str
    client_id: str
    role: str
    disabled: bool
    password_hash: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A stored session, with what resolving it needs to know about the accounts.

    :ivar account: the account of an ``account`` session (``None`` when it was removed, and for
        sessions of any other source).
    :ivar name_taken: ``subject`` or ``client_id`` is some account's username or clientId.
    """

    subject: str
    client_id: str
    role: str
    source: str
    expires: float
    account: UserRecord | None
    name_taken: bool


class UserStorage(Protocol):
    """Accounts. ``False`` from a change means there is no such account (and nothing was queued).

    ``revoke``: revocations to put in the outbox in the same transaction as the change, so that a
    crash between the two can never keep the change and lose the revocation (or the reverse).
    """

    async def get(self, username: str) -> UserRecord | None: ...

    async def by_client_id(self, client_id: str) -> UserRecord | None: ...

    async def all(self) -> list[UserRecord]: ...

    async def insert(self, user: UserRecord, *, created: float) -> bool:
        """Add an account; ``False`` when its username or clientId is already any account's name."""
        ...

    async def set_role(self, username: str, role: str, *, revoke: QueuedRevocations | None = None) -> bool: ...

    async def set_disabled(self, username: str, disabled: bool, *, revoke: QueuedRevocations | None = None) -> bool: ...

    async def set_password_hash(
        self, username: str, password_hash: str, *, end_sessions: bool, revoke: QueuedRevocations | None = None
    ) -> bool:
        """Store a new hash; ``end_sessions`` also ends the account's sessions (reason
        :data:`ENDED_PASSWORD`), atomically."""
        ...

    async def delete(self, username: str, *, revoke: QueuedRevocations | None = None) -> bool:
        """Remove the account and end its sessions (reason :data:`ENDED_REMOVED`), atomically."""
        ...


class SessionStorage(Protocol):
    """Sessions, by the SHA-256 of their random id (the id itself is never stored).

    Ending a session deletes it and remembers why (``reason``, nothing else) until it would have
    expired, for :meth:`ended`; ``revoke`` goes into the outbox in the same transaction.
    """

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
        """Store a session (and purge the sessions and ended-session reasons expired by ``now``); ``sid``:
        the identity provider's session id, for its back-channel logout."""
        ...

    async def delete(self, id_hash: str, *, reason: str, revoke: QueuedRevocations | None = None) -> None: ...

    async def delete_subject(
        self, subject: str, source: str, *, reason: str, revoke: QueuedRevocations | None = None
    ) -> None:
        """End every session of ``subject`` from ``source``."""
        ...

    async def lookup(self, id_hash: str) -> SessionRecord | None: ...

    async def ended(self, id_hash: str, *, now: float) -> str | None:
        """Why the session ``id_hash`` ended, while it would still be alive (None: not known)."""
        ...


@dataclass(frozen=True, slots=True)
class PendingRevocation:
    """A revocation to deliver to Ably: ``target`` (``clientId:x`` / ``revocationKey:x``) of tokens of
    ``key_name`` issued before ``issued_before`` (ms), with ``allowReauthMargin`` when ``reauth``."""

    key_name: str
    target: str
    issued_before: int
    reauth: bool
    reason: str
    id: int = 0
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class QueuedRevocations:
    """Outbox rows to store with the change that calls for them, due at ``at``."""

    rows: tuple[PendingRevocation, ...]
    at: float


#: Why a session ended, as :meth:`SessionStorage.ended` answers (callers may record others).
ENDED_LOGOUT = "logout"
ENDED_EVERYWHERE = "everywhere"
ENDED_PASSWORD = "password"  # noqa: S105 - a reason, not a password
ENDED_REMOVED = "removed"
ENDED_PROVIDER = "provider"


@dataclass(frozen=True, slots=True)
class UpstreamLogout:
    """A back-channel logout to record: from ``issuer`` (its sessions' source is ``source``), for the
    provider session ``sid`` when given, else for every session of ``subject`` (the upstream ``sub``;
    ``session_subject`` is how sessions store it). Upstream tokens of that ``sub`` issued at or before
    ``cutoff`` (or carrying that ``sid``) are refused until ``expires``."""

    issuer: str
    source: str
    sub: str | None
    session_subject: str | None
    sid: str | None
    cutoff: float
    expires: float


#: The kinds of recorded upstream logouts: by subject, by the provider's session id.
LOGOUT_BY_SUB = "sub"
LOGOUT_BY_SID = "sid"


def logout_where(logout: UpstreamLogout, mark: str) -> tuple[str, tuple[str, ...]]:
    """The clause (with ``mark`` placeholders) and parameters selecting the sessions ``logout`` ends:
    the provider session's when it names one, else every session of the subject from that source."""
    if logout.sid is not None:
        return (
            f"source = {mark} AND id_hash IN (SELECT id_hash FROM session_sids WHERE sid = {mark})",  # noqa: S608
            (logout.source, logout.sid),
        )
    return f"source = {mark} AND username = {mark}", (logout.source, logout.session_subject or "")


def logout_rows(logout: UpstreamLogout) -> list[tuple[str, str, str, float, float]]:
    """The ``upstream_logouts`` rows of ``logout``: one by sid when it names one, else one by subject."""
    kind, value = (LOGOUT_BY_SID, logout.sid) if logout.sid is not None else (LOGOUT_BY_SUB, logout.sub)
    return [(logout.issuer, kind, value or "", logout.cutoff, logout.expires)]


class LogoutStorage(Protocol):
    """What OpenID Connect back-channel logout keeps: the ids of the logout tokens already received
    (replays are refused), and the logouts (which upstream tokens are refused from then on)."""

    async def claim(self, token_id: str, *, expires: float, now: float) -> bool:
        """Record a logout token's id until ``expires``; False when it was already recorded (a replay)."""
        ...

    async def release(self, token_id: str) -> None:
        """Forget a token id (the logout it came with could not be applied: the provider may send it again)."""
        ...

    async def sessions(self, logout: UpstreamLogout) -> list[tuple[str, str]]:
        """``(id_hash, client_id)`` of the sessions ``logout`` ends."""
        ...

    async def log_out(self, logout: UpstreamLogout, *, now: float, revoke: QueuedRevocations | None = None) -> int:
        """End the sessions ``logout`` names (reason :data:`ENDED_PROVIDER`), record it and queue ``revoke``,
        in one transaction; returns how many sessions ended."""
        ...

    async def cutoffs(self, issuer: str, sub: str | None, sid: str | None, *, now: float) -> list[tuple[str, float]]:
        """``(kind, cutoff)`` of the recorded logouts of ``issuer`` for ``sub`` or ``sid``."""
        ...


class OutboxStorage(Protocol):
    """The revocation outbox: rows stay until Ably has taken them (delivered at least once; a
    revocation delivered twice has the effect of one)."""

    async def add(self, items: list[PendingRevocation], *, now: float) -> None: ...

    async def claim(self, *, now: float, limit: int, lease: float) -> list[PendingRevocation]:
        """Up to ``limit`` rows due by ``now``, oldest first, put out of reach of other claimers for ``lease`` s."""
        ...

    async def done(self, ids: list[int]) -> None:
        """Delivered: forget them."""
        ...

    async def retry(self, ids: list[int], *, next_attempt: float) -> None:
        """Not delivered: count an attempt and try again at ``next_attempt``."""
        ...

    async def pending(self) -> int: ...


class Storage(Protocol):
    """One engine's accounts, sessions and revocation outbox, opened on one database."""

    @property
    def users(self) -> UserStorage: ...

    @property
    def sessions(self) -> SessionStorage: ...

    @property
    def outbox(self) -> OutboxStorage: ...

    @property
    def logouts(self) -> LogoutStorage: ...

    @property
    def description(self) -> str:
        """Where the data is, for logs and ``check`` (never with credentials)."""
        ...

    async def open(self) -> None:
        """Connect; give an empty database the current schema.

        :raises DatabaseError: unreachable, or an older (run ``authserver db upgrade``), newer or unknown schema.
        """
        ...

    async def version(self) -> int | None:
        """The database's schema version (None: an empty database)."""
        ...

    async def upgrade(self) -> list[int]:
        """Apply the migrations the database lacks; returns the versions applied."""
        ...

    async def ready(self) -> str | None:
        """Why the database cannot serve right now, or None when it answers with the current schema."""
        ...

    async def close(self) -> None: ...
