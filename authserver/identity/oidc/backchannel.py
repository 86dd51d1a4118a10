"""What a valid back-channel logout does, and what it leaves behind for ``/auth``.

:meth:`UpstreamLogouts.apply` records the logout token's ``jti`` (a replay is refused, across workers
through Redis when configured, else through the database), then, in one transaction, ends the sessions
the logout names (the provider session ``sid`` where given, else every session of ``sub`` from that
provider), records the logout and queues the revocation of the Ably tokens it covers in the outbox.

:meth:`UpstreamLogouts.refused` answers, for every upstream bearer token ``/auth`` sees, whether a
recorded logout covers it: one of that ``sub`` at or after the token's ``iat`` (or ``auth_time``), or
one of the provider session it carries (``sid``). Answers are remembered for ``recheck`` seconds and
forgotten at every announced change (a logout announces one), as sessions are.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from authserver.core.clientids import is_safe_client_id
from authserver.core.issuers import UpstreamIssuer
from authserver.identity.sessions import INCOMPLETE_RECHECK, session_revocation_key
from authserver.infra.changes import SessionChanges
from authserver.infra.seenids import SeenIds
from authserver.revocation.targets import RevocationQueue, session_target, user_target
from authserver.storage import LOGOUT_BY_SID, LogoutStorage, QueuedRevocations, UpstreamLogout

if TYPE_CHECKING:
    from authserver.identity.oidc.logout import LogoutClaims

#: How long a logout is kept, refusing the upstream tokens issued before it (7 days: longer than any
#: upstream token lives in practice).
RETENTION = 7 * 86400
_MEMORY_LIMIT = 10_000
REVOCATION_REASON = "provider-logout"


def sid_revocation_key(issuer: str, sid: str) -> str:
    """The ``x-ably-revocation-key`` of the Ably tokens minted for an upstream token carrying ``sid``."""
    return "p:" + hashlib.sha256(f"authserver.sid:{issuer}\n{sid}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Stamp:
    """What ``/auth`` needs of a verified upstream token to tell whether a logout covers it."""

    issuer: str
    sub: str | None
    sid: str | None
    #: ``auth_time`` or ``iat``, the earlier (None: the token has neither).
    issued: float | None


class UpstreamLogouts:
    def __init__(
        self,
        storage: LogoutStorage,
        seen: SeenIds,
        changes: SessionChanges,
        *,
        revoke: RevocationQueue | None = None,
        recheck: float = 1.0,
    ) -> None:
        self.storage = storage
        self.seen = seen
        self.changes = changes
        self.revoke = revoke
        self.recheck = recheck
        self._memory: dict[tuple[str, str | None, str | None], tuple[list[tuple[str, float]], float]] = {}
        #: Moved by every announced change: a lookup that overlapped one is not remembered.
        self._generation = 0
        changes.subscribe(self.forget)

    def forget(self) -> None:
        """Drop what was remembered (a logout was announced, here or in another process)."""
        self._generation += 1
        self._memory.clear()

    async def apply(self, claims: LogoutClaims, upstream: UpstreamIssuer, now: float) -> int:
        """Carry out a valid logout; returns how many sessions it ended.

        :raises LogoutTokenRefused: its ``jti`` was seen before (a replay): nothing changes.
        """
        from authserver.identity.oidc.logout import MAX_AGE, refused  # PyJWT only with a provider configured

        token_id = hashlib.sha256(f"{claims.issuer}\n{claims.jti}".encode()).hexdigest()
        if not await self.seen.claim(token_id, expires=now + MAX_AGE + 2 * upstream.leeway, now=now):
            raise refused("replayed (its jti was received before)")
        logout = UpstreamLogout(
            issuer=claims.issuer,
            source=upstream.source,
            sub=claims.sub,
            session_subject=None if claims.sub is None else f"{claims.issuer}#{claims.sub}",
            sid=claims.sid,
            cutoff=claims.iat,
            expires=now + RETENTION,
        )
        try:
            revocations = await self._revocations(logout, upstream)
            ended = await self.storage.log_out(logout, now=now, revoke=revocations)
        except BaseException:
            with contextlib.suppress(Exception):  # the error that stopped the logout is the one to report
                await self.seen.release(token_id)  # not applied: the provider may send it again
            raise
        await self.changes.announce()
        if revocations is not None and self.revoke is not None:
            await self.revoke.queued(revocations)
        return ended

    async def _revocations(self, logout: UpstreamLogout, upstream: UpstreamIssuer) -> QueuedRevocations | None:
        """The Ably tokens a logout takes back: those of the sessions it ends; with a ``sid``, those minted
        for upstream tokens carrying it; else every token of the user's clientId(s)."""
        if self.revoke is None:
            return None
        sessions = await self.storage.sessions(logout)
        targets = {session_target(session_revocation_key(id_hash)) for id_hash, _ in sessions}
        if logout.sid is not None:
            targets.add(session_target(sid_revocation_key(logout.issuer, logout.sid)))
        else:
            targets.update(user_target(client_id) for _, client_id in sessions)
            if upstream.client_id_claim == "sub" and logout.sub is not None:
                client_id = upstream.client_id_for(logout.sub)
                if is_safe_client_id(client_id):
                    targets.add(user_target(client_id))
        return self.revoke.queue(sorted(targets), reason=REVOCATION_REASON)

    async def refused(self, stamp: Stamp, now: float) -> bool:
        """Whether a recorded logout covers the upstream token ``stamp`` describes."""
        if stamp.sub is None and stamp.sid is None:
            return False
        key = (stamp.issuer, stamp.sub, stamp.sid)
        entry = self._memory.get(key)
        window = self.recheck if self.changes.complete else min(self.recheck, INCOMPLETE_RECHECK)
        if entry is not None and 0 <= now - entry[1] < window:
            cutoffs = entry[0]
        else:
            generation = self._generation
            cutoffs = await self.storage.cutoffs(stamp.issuer, stamp.sub, stamp.sid, now=now)
            if len(self._memory) >= _MEMORY_LIMIT:
                self._memory.clear()
            if generation == self._generation:
                self._memory[key] = (cutoffs, now)
        for kind, cutoff in cutoffs:
            if kind == LOGOUT_BY_SID or stamp.issued is None or stamp.issued <= cutoff:
                return True
        return False
