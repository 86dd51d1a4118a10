"""Login sessions: a random id in a signed cookie, the server-side record in the database.

The cookie carries ``itsdangerous``-signed random bytes; only their SHA-256 is stored, so a copy of
the database does not hand out live sessions. Logging out deletes the record, which ends the
session everywhere. Sessions are re-checked when they are resolved:

- an account session follows its account: disabled -> 403, a new role or clientId applies to the next
  token; changing the password or removing the account ends its sessions (disabling keeps them);
- a session ended elsewhere (log out everywhere, a new password, the account removed, a logout in
  another window) is remembered with its reason until it would have expired: its cookie gets a final
  403 saying why (:func:`ended_error`), so the page can say what happened;
- a demo session ends (401) once demo login is off, and once its name or clientId belongs to an
  account, so a demo login can never become an account's identity;
- a session of any other source (e.g. ``oidc:<issuer>``) keeps the identity it began with, until it
  expires or ends, whatever demo mode says (unless its name is taken by an account).

Resolving a session is on the hot path of ``/auth``, so a resolved session is remembered for
``recheck`` seconds (default 1): a remembered session is answered without awaiting anything. Any
change that can end or alter a session is announced on :class:`~.changes.SessionChanges`, which
empties the memory at once (in every process when the announcements are shared); a change that
is not announced (a process with no shared announcements, such as the CLI without Redis) is seen
within ``recheck`` seconds, and within one second whenever shared announcements are interrupted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import secrets

from itsdangerous import BadSignature, Signer

from authserver.core.callers import ACCOUNT, DEMO, Identity
from authserver.errors import (
    AccountRemovedError,
    LoggedOutElsewhereError,
    LoggedOutError,
    NotAuthenticatedError,
    PasswordChangedError,
    ProviderLogoutError,
    SessionEndedError,
)
from authserver.identity import Credentials
from authserver.identity.users import account_identity
from authserver.infra.changes import LocalChanges, SessionChanges
from authserver.revocation.targets import RevocationQueue, session_target, user_target
from authserver.storage import (
    ENDED_EVERYWHERE,
    ENDED_LOGOUT,
    ENDED_PASSWORD,
    ENDED_PROVIDER,
    ENDED_REMOVED,
    QueuedRevocations,
    SessionRecord,
    SessionStorage,
)

COOKIE_NAME = "authserver_session"
#: What ``/logout`` leaves in the browser instead of deleting the cookie: the other tabs of the same
#: browser then send it, and their Ably clients get the final 403 40304 ("logged out in another window")
#: instead of a 401 they would retry for ever. It grants nothing, so it need not be signed.
LOGGED_OUT = "logged-out"
_CACHE_LIMIT = 10_000
#: The longest a session is remembered while announcements may be missed (shared ones lost their link).
INCOMPLETE_RECHECK = 1.0


def ended_error(reason: str) -> SessionEndedError:
    """What a request with the cookie of a session that ended for ``reason`` gets (403: final)."""
    if reason == ENDED_EVERYWHERE:
        return LoggedOutElsewhereError("you were logged out from another device")
    if reason == ENDED_PASSWORD:
        return PasswordChangedError("your password was changed; log in again")
    if reason == ENDED_REMOVED:
        return AccountRemovedError("your account was removed")
    if reason == ENDED_PROVIDER:
        return ProviderLogoutError("you were logged out at your identity provider; log in again")
    return LoggedOutError("you were logged out in another window")


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def session_revocation_key(id_hash: str) -> str:
    """The ``x-ably-revocation-key`` of one session's tokens: a digest of the stored id hash, so it names
    the session (one device) without being the cookie or anything that leads back to it."""
    return "s:" + hashlib.sha256(f"authserver.revocation:{id_hash}".encode("ascii")).hexdigest()[:32]


class SessionStore:
    """Creates, resolves and ends sessions. Also the :class:`Authenticator` for session cookies."""

    def __init__(
        self,
        storage: SessionStorage,
        secret: str,
        *,
        ttl: int,
        demo_login: bool = False,
        recheck: float = 1.0,
        changes: SessionChanges | None = None,
        revoke: RevocationQueue | None = None,
    ) -> None:
        self.storage = storage
        #: Takes back the tokens of the sessions that end (None: revocation is off).
        self.revoke = revoke
        self.ttl = ttl
        self.demo_login = demo_login
        self.recheck = recheck
        self.changes: SessionChanges = changes or LocalChanges()
        self._signer = Signer(secret, salt="authserver.session")
        # cookie -> (identity, session expiry, checked at)
        self._resolved: dict[str, tuple[Identity, float, float]] = {}
        self._pending: dict[str, asyncio.Future[Identity]] = {}
        #: Moved by every announced change: a lookup that overlapped one is not remembered.
        self._generation = 0
        self.changes.subscribe(self.forget)

    def forget(self) -> None:
        """Drop every remembered session (an account or session changed somewhere); a lookup already
        under way is not joined by later requests (it may have read the store before the change)."""
        self._generation += 1
        self._resolved.clear()
        self._pending.clear()

    def _settled(self, cookie: str, done: asyncio.Future[Identity]) -> None:
        if self._pending.get(cookie) is done:
            del self._pending[cookie]
        if not done.cancelled():
            done.exception()  # retrieved: a refusal nobody else awaited is not "never retrieved"

    async def create(self, identity: Identity, now: float, *, sid: str | None = None) -> str:
        """Store a session for ``identity`` and return the cookie value; ``sid``: the identity provider's
        session id (a provider login), so that its back-channel logout ends exactly this session."""
        session_id = secrets.token_urlsafe(32)
        # A new session changes nothing any remembered session depends on: nothing to announce.
        await self.storage.insert(
            _hash(session_id),
            subject=identity.subject,
            client_id=identity.client_id,
            role=identity.role,
            source=identity.source,
            expires=now + self.ttl,
            now=now,
            sid=sid,
        )
        return self._signer.sign(session_id).decode("ascii")

    def _session_id(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            return self._signer.unsign(cookie).decode("ascii")
        except (BadSignature, UnicodeError):
            return None

    def _revocations(self, target: str, reason: str) -> QueuedRevocations | None:
        return None if self.revoke is None else self.revoke.queue([target], reason=reason)

    async def _ended(self, revocations: QueuedRevocations | None) -> None:
        await self.changes.announce()
        if revocations is not None and self.revoke is not None:
            await self.revoke.queued(revocations)

    async def end(self, cookie: str | None, reason: str = ENDED_LOGOUT) -> bool:
        """End the session of ``cookie`` and revoke its tokens (this device only), in one transaction;
        False when there is no valid cookie."""
        session_id = self._session_id(cookie)
        if session_id is None:
            return False
        id_hash = _hash(session_id)
        revocations = self._revocations(session_target(session_revocation_key(id_hash)), reason)
        await self.storage.delete(id_hash, reason=reason, revoke=revocations)
        await self._ended(revocations)
        return True

    async def end_all(self, identity: Identity) -> None:
        """End every session of ``identity``'s subject (of its source) and revoke every token of its
        clientId, in one transaction: "log out everywhere"."""
        revocations = self._revocations(user_target(identity.client_id), ENDED_EVERYWHERE)
        await self.storage.delete_subject(
            identity.subject, identity.source, reason=ENDED_EVERYWHERE, revoke=revocations
        )
        await self._ended(revocations)

    def remembered(self, credentials: Credentials, now: float) -> Identity | None:
        """The identity of a session resolved less than ``recheck`` seconds ago, from memory only."""
        cookie = credentials.cookies.get(COOKIE_NAME)
        if cookie is None:
            return None
        entry = self._resolved.get(cookie)
        if entry is None:
            return None
        identity, expires, checked = entry
        window = self.recheck if self.changes.complete else min(self.recheck, INCOMPLETE_RECHECK)
        if now < expires and 0 <= now - checked < window:
            return identity
        self._resolved.pop(cookie, None)
        return None

    async def authenticate(self, credentials: Credentials, now: float) -> Identity | None:
        """Resolve the session cookie: from memory when it was resolved moments ago (no await), else
        from the store.

        :returns: ``None`` when there is no session cookie at all.
        :raises NotAuthenticatedError: a cookie that is forged, unknown or expired, an account that
            was removed, a demo session that may no longer be used.
        :raises ForbiddenError: a session of an account that has since been disabled.
        :raises SessionEndedError: a session that was ended elsewhere (logged out everywhere, the
            password changed, the account removed): final for this cookie, and says why.
        """
        cookie = credentials.cookies.get(COOKIE_NAME)
        if cookie is None:
            return None
        if cookie == LOGGED_OUT:
            raise ended_error(ENDED_LOGOUT)
        identity = self.remembered(credentials, now)
        if identity is not None:
            return identity
        if getattr(self.storage, "reads_inline", False):
            # A lookup that never suspends cannot be joined or cancelled half-way: answered in this
            # task, without the task hops of a shared lookup (a loop iteration each, under load).
            return await self._lookup(cookie, now)
        # One lookup per cookie at a time: requests that miss while it runs wait for its answer
        # rather than each asking the store (a burst after every recheck would otherwise be a herd).
        pending = self._pending.get(cookie)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(cookie, now))
            self._pending[cookie] = pending
            pending.add_done_callback(lambda done: self._settled(cookie, done))
        return await asyncio.shield(pending)  # a caller that goes away does not cancel the others' answer

    async def _lookup(self, cookie: str, now: float) -> Identity:
        generation = self._generation  # read before the lookup: a change announced meanwhile forces a recheck
        identity, expires = await self._resolve(cookie, now)
        if generation == self._generation:
            if len(self._resolved) >= _CACHE_LIMIT:
                self._resolved.clear()
            self._resolved[cookie] = (identity, expires, now)
        return identity

    async def _resolve(self, cookie: str, now: float) -> tuple[Identity, float]:
        session_id = self._session_id(cookie)
        if session_id is None:
            raise NotAuthenticatedError("session is not valid; log in again")
        id_hash = _hash(session_id)
        record = await self.storage.lookup(id_hash)
        if record is None:
            reason = await self.storage.ended(id_hash, now=now)
            if reason is not None:
                raise ended_error(reason)
            raise NotAuthenticatedError("session has ended; log in again")
        if record.expires <= now:  # the record goes with the next login's clean-up (reads only here)
            raise NotAuthenticatedError("session has expired; log in again")
        identity = dataclasses.replace(self._identity(record), revocation_key=session_revocation_key(_hash(session_id)))
        return identity, record.expires

    def _identity(self, record: SessionRecord) -> Identity:
        if record.source == ACCOUNT:
            if record.account is None:
                raise NotAuthenticatedError("account no longer exists; log in again")
            return account_identity(record.account)
        if record.source == DEMO and not self.demo_login:
            raise NotAuthenticatedError("demo session has ended; log in again")
        if record.name_taken:
            # Neither a demo nor another source's identity may ever act as a registered account.
            raise NotAuthenticatedError(f"{record.source} session has ended; log in again")
        return Identity(subject=record.subject, client_id=record.client_id, role=record.role, source=record.source)
