"""The revocation outbox at work: actions enqueue revocations in the database, a background task
delivers them to Ably (batched, retried with backoff), so a revocation asked for while Ably is
unreachable, or just before the process stops, is still delivered later.

Delivery is at least once; Ably's revocation is idempotent (a second call with the same target and
``issuedBefore`` revokes nothing more), so in effect it is exactly once. Rows are claimed with a
lease, so several workers or instances rarely send the same row twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable
from typing import Protocol

from authserver.core.keys import AblyKey
from authserver.revocation.ablyrest import CallResult
from authserver.revocation.targets import backoff, batches
from authserver.storage import OutboxStorage, PendingRevocation, QueuedRevocations

log = logging.getLogger("authserver.revocation")

#: Rows claimed per round, and how long a claim keeps other deliverers away: longer than one call to
#: Ably with its one retry (:class:`~authserver.revocation.ablyrest.AblyRestApi`'s timeout twice), short enough
#: that the claims of a process killed mid-call are taken over by the next deliverer within seconds.
CLAIM_LIMIT = 1000
CLAIM_LEASE_S = 15.0
#: How often the outbox is looked at without a nudge (rows another process enqueued, retries due).
POLL_INTERVAL_S = 1.0


class RevokeApi(Protocol):
    async def revoke(self, key: AblyKey, body: dict[str, object]) -> CallResult: ...

    async def time_ms(self, key: AblyKey) -> int: ...

    async def close(self) -> None: ...


class BatchReport(Protocol):
    def __call__(self, outcome: str, targets: int) -> None: ...


class Revoker:
    """Enqueues revocations and delivers the outbox.

    :param keys: every configured key: each may have signed tokens still alive (rotation), and Ably
        only lets the key that issued a token revoke it (40133), so each revocation goes with each key.
    :param issued_before_ms: ``issuedBefore`` for revoking these targets now (:meth:`.Issuer.revocation_cutoff`).
    """

    def __init__(
        self,
        outbox: OutboxStorage,
        keys: tuple[AblyKey, ...],
        api: RevokeApi,
        *,
        clock: Callable[[], float],
        issued_before_ms: Callable[[list[str]], int],
        report: BatchReport | None = None,
    ) -> None:
        self.outbox = outbox
        self.keys = {key.name: key for key in keys}
        self.api = api
        self.clock = clock
        self.issued_before_ms = issued_before_ms
        self.report = report
        self._wake = asyncio.Event()

    def queue(
        self, targets: Iterable[str], *, reason: str, reauth: bool = False, issued_before_ms: int | None = None
    ) -> QueuedRevocations:
        """The outbox rows that revoke ``targets``'s tokens issued until now (or ``issued_before_ms``),
        one per target and key, for the storage to insert with the change that calls for them; then
        call :meth:`queued` once the change is stored and announced."""
        unique = list(dict.fromkeys(targets))
        # NOTE: the cutoff is taken before the change is stored, so the users it covers are not noted
        # yet (the issuer mints their next tokens past it): a renewal answered from the old state until
        # the change is visible must stay covered. :meth:`queued` notes them.
        issued_before = self.issued_before_ms([]) if issued_before_ms is None else issued_before_ms
        rows = tuple(
            PendingRevocation(name, target, issued_before, reauth, reason) for target in unique for name in self.keys
        )
        now = self.clock()
        # NOTE: with allowReauthMargin, Ably prompts the client to renew (AUTH) as soon as the call
        # lands; the renewed token must be minted in a later second than the cutoff covers, so such
        # a call waits for the next second (ordinary ones go at once).
        return QueuedRevocations(rows, float(math.floor(now) + 1) if reauth else now)

    async def queued(self, revocations: QueuedRevocations) -> None:
        """``revocations`` (made by :meth:`queue`) are stored with their change, which is now visible:
        note the users they cover, so that their next tokens are minted past the cutoff; when the clock
        went into another second meanwhile, revoke again up to now (a renewal answered from the old
        state in that second is past the first cutoff); then deliver them."""
        if not revocations.rows:
            return
        first = revocations.rows[0]
        targets = list(dict.fromkeys(row.target for row in revocations.rows))
        cutoff = self.issued_before_ms(targets)
        if cutoff // 1000 > first.issued_before // 1000:
            again = self.queue(targets, reason=first.reason, reauth=first.reauth, issued_before_ms=cutoff)
            try:
                await self.outbox.add(list(again.rows), now=again.at)
            except Exception as exc:  # the change and its first revocation are stored: this one is a top-up
                log.warning("revocation up to now not queued (%s); the change's own is", type(exc).__name__)
        self._deliver_soon(revocations)

    def _deliver_soon(self, revocations: QueuedRevocations) -> None:
        reasons = ",".join(sorted({row.reason for row in revocations.rows}))
        log.info("revocation queued: %d target(s), reason %s", len(revocations.rows) // len(self.keys), reasons)
        self._wake.set()

    async def revoke(
        self, targets: Iterable[str], *, reason: str, reauth: bool = False, issued_before_ms: int | None = None
    ) -> int:
        """Enqueue the revocation of ``targets``'s tokens on its own (no change goes with it); returns
        the rows enqueued (one per target and key)."""
        revocations = self.queue(targets, reason=reason, reauth=reauth, issued_before_ms=issued_before_ms)
        if revocations.rows:
            await self.outbox.add(list(revocations.rows), now=revocations.at)
            if issued_before_ms is None:
                await self.queued(revocations)
            else:  # the operator's own cutoff: nothing to note or to extend
                self._deliver_soon(revocations)
        return len(revocations.rows)

    async def deliver(self) -> int:
        """Send what is due now; returns the rows delivered (or refused for good)."""
        now = self.clock()
        rows = await self.outbox.claim(now=now, limit=CLAIM_LIMIT, lease=CLAIM_LEASE_S)
        finished = 0
        for batch in batches(rows):
            key = self.keys.get(batch.key_name)
            if key is None:  # a key no longer configured: its tokens cannot be revoked from here
                log.warning("revocation dropped: key %s is no longer configured", batch.key_name)
                await self.outbox.done(batch.ids)
                finished += len(batch.rows)
                continue
            result = await self.api.revoke(key, batch.body())
            targets = len(batch.targets)
            if self.report is not None:
                self.report(result.outcome, targets)
            if result.outcome == "retry":
                attempts = max(row.attempts for row in batch.rows)
                wait = backoff(attempts)
                log.warning(
                    "revocation batch not delivered: key %s, %d target(s), status %s code %s; retry in %.0f s",
                    key.name,
                    targets,
                    result.status,
                    result.code,
                    wait,
                )
                await self.outbox.retry(batch.ids, next_attempt=self.clock() + wait)
                continue
            if result.outcome == "refused":
                log.error(
                    "revocation batch refused by Ably: key %s, %d target(s), status %s code %s: %s",
                    key.name,
                    targets,
                    result.status,
                    result.code,
                    result.message,
                )
            else:
                log.info(
                    "revocation batch delivered: key %s, %d target(s), reason %s",
                    key.name,
                    targets,
                    ",".join(sorted({row.reason for row in batch.rows})),
                )
            await self.outbox.done(batch.ids)
            finished += len(batch.rows)
        return finished

    async def time_ms(self) -> int:
        """Ably's clock, asked with the signing key."""
        return await self.api.time_ms(next(iter(self.keys.values())))

    async def close(self) -> None:
        await self.api.close()

    async def run(self) -> None:
        """Deliver for ever: at once when this process enqueues, else every :data:`POLL_INTERVAL_S`."""
        while True:
            try:
                await self.deliver()
            except Exception as exc:
                log.warning("revocation outbox not read: %s", exc)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=POLL_INTERVAL_S)
            except TimeoutError:
                pass
            self._wake.clear()
