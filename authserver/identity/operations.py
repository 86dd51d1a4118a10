"""What an operator does beyond an account's own fields, one implementation for the command line and
the admin API: a user's sessions (list, end them all), revocations by user, clientId or session, and
the state of the revocation outbox. Account changes themselves are :class:`~.users.UserStore`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from authserver.core.callers import ACCOUNT
from authserver.errors import NotFoundError, UserError
from authserver.identity.sessions import end_sessions_of, session_revocation_key
from authserver.identity.users import User, UserStore
from authserver.revocation.outbox import Revoker
from authserver.revocation.targets import (
    MAX_TARGETS_PER_CALL,
    issued_before_window,
    parse_target,
    session_target,
    user_target,
)
from authserver.storage import OutboxState, OutboxStorage, SessionStorage, SessionSummary, UserStorage

#: The kinds of revocation target an operator names: an account, a clientId, one session.
TARGET_KINDS = ("user", "clientId", "session")


async def resolve_target(users: UserStorage, kind: str, value: str) -> str:
    """The Ably target (``clientId:x`` / ``revocationKey:x``) of an operator's target.

    ``session``: a session's revocation key (``s:...``) or its stored id hash.

    :raises NotFoundError: a user that does not exist. :raises UserError: an unknown kind or empty value.
    """
    if kind == "user":
        user = await users.get(value)
        if user is None:
            raise NotFoundError(f"no such user: {value!r}")
        target = user_target(user.client_id)
    elif kind == "clientId":
        target = user_target(value)
    elif kind in ("session", "revocationKey"):
        target = session_target(value if value.startswith("s:") else session_revocation_key(value))
    else:
        raise UserError(f"revocation target kind must be one of {', '.join(TARGET_KINDS)}, not {kind[:40]!r}")
    try:
        return parse_target(target)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def checked_issued_before(issued_before_ms: int, *, now: float) -> int:
    """An operator's ``issuedBefore`` as it will be sent (:func:`issued_before_window`).

    :raises UserError: one Ably would refuse (400, 40003), naming the window.
    """
    try:
        return issued_before_window(issued_before_ms, int(now * 1000))
    except ValueError as exc:
        raise UserError(str(exc), code=40003) from None


@dataclass(frozen=True)
class Revocation:
    """A revocation an operator asked for: its Ably targets and the outbox rows queued (one per key)."""

    targets: tuple[str, ...]
    queued: int
    #: The ``issuedBefore`` sent (None: now, as each delivery makes it).
    issued_before_ms: int | None = None


class Operations:
    """The operator's actions on a running service's collaborators (or a command's)."""

    def __init__(
        self, users: UserStore, sessions: SessionStorage, outbox: OutboxStorage, revoker: Revoker | None
    ) -> None:
        self.users = users
        self.sessions = sessions
        self.outbox = outbox
        self.revoker = revoker

    async def user(self, username: str) -> User:
        """:raises NotFoundError: no such account."""
        user = await self.users.get(username)
        if user is None:
            raise NotFoundError(f"no such user: {username!r}")
        return user

    async def sessions_of(self, username: str, *, now: float) -> list[SessionSummary]:
        """The account's live login sessions. :raises NotFoundError: no such account."""
        await self.user(username)
        return await self.sessions.of_subject(username, ACCOUNT, now=now)

    async def end_sessions(self, username: str) -> None:
        """Log the account out everywhere: end its sessions and revoke its tokens (all devices)."""
        user = await self.user(username)
        await end_sessions_of(self.sessions, self.users.changes, self.revoker, username, ACCOUNT, user.client_id)

    async def revoke(
        self, targets: Sequence[tuple[str, str]], *, issued_before_ms: int | None, reauth: bool, now: float
    ) -> Revocation:
        """Queue the revocation of ``(kind, value)`` targets (delivered by the outbox).

        :raises UserError: revocation is off, no target or too many, one that is not valid, or an
            ``issued_before_ms`` Ably would refuse (:func:`checked_issued_before`).
        :raises NotFoundError: a user target that does not exist.
        """
        if self.revoker is None:
            raise UserError("revocation is off (ABLY_REVOCABLE_TOKENS=false) or no Ably key is known")
        if not 1 <= len(targets) <= MAX_TARGETS_PER_CALL:
            raise UserError(f"between 1 and {MAX_TARGETS_PER_CALL} targets, please")
        if issued_before_ms is not None:
            issued_before_ms = checked_issued_before(issued_before_ms, now=now)
        resolved = [await resolve_target(self.users.storage, kind, value) for kind, value in targets]
        queued = await self.revoker.revoke(
            resolved, reason="operator", reauth=reauth, issued_before_ms=issued_before_ms
        )
        return Revocation(tuple(dict.fromkeys(resolved)), queued, issued_before_ms)

    async def outbox_state(self, *, now: float) -> OutboxState:
        return await self.outbox.state(now=now)
