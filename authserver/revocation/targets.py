"""Token revocation, the issuer's side: which tokens an action takes back, and how the outbox's rows
are grouped into calls of Ably's ``POST /keys/{keyName}/revokeTokens`` (ably-spec 8.3).

Pure: no I/O, no clock of its own. What each action revokes:

==========================================  =================================  ==================
action                                      target                             allowReauthMargin
==========================================  =================================  ==================
logout (one device)                         ``revocationKey:<session key>``    no
password change, disable, remove,           ``clientId:<clientId>``            no
"log out everywhere"
role change                                 ``clientId:<clientId>``            yes: Ably sends AUTH
                                                                               first, the client
                                                                               renews in band with
                                                                               the new capability
==========================================  =================================  ==================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from authserver.storage import PendingRevocation, QueuedRevocations

#: Ably takes at most 100 targets per revokeTokens call.
MAX_TARGETS_PER_CALL = 100
#: Retries back off exponentially from one second to this ceiling.
MAX_BACKOFF_S = 30.0
#: Ably refuses an ``issuedBefore`` in the future or more than an hour in the past (TokenRevocationOptions).
ISSUED_BEFORE_MAX_AGE_MS = 3_600_000
#: Of Ably's hour, this much is kept for the delivery (and the two clocks' difference); a time up to this
#: far ahead of now counts as now.
ISSUED_BEFORE_SLACK_MS = 60_000


def issued_before_window(issued_before_ms: int, now_ms: int) -> int:
    """The ``issuedBefore`` to send for an operator's ``issued_before_ms``: within the last hour less
    :data:`ISSUED_BEFORE_SLACK_MS` (so that Ably still takes it on delivery), and not after ``now_ms``
    (up to the slack ahead is taken as ``now_ms``: the operator's clock may run a little ahead).

    :raises ValueError: outside that window, saying what it is.
    """
    earliest = now_ms - ISSUED_BEFORE_MAX_AGE_MS + ISSUED_BEFORE_SLACK_MS
    if not earliest <= issued_before_ms <= now_ms + ISSUED_BEFORE_SLACK_MS:
        raise ValueError(
            "issuedBefore must be not in the future and at most an hour ago, as Ably requires: between"
            f" {earliest} and {now_ms} ms since the epoch now (59 minutes ago; a minute of the hour is kept"
            " for the delivery, and up to a minute ahead counts as now)"
        )
    return min(issued_before_ms, now_ms)


class RevocationQueue(Protocol):
    """Takes back issued tokens (:class:`~authserver.revocation.outbox.Revoker`): :meth:`queue` makes the outbox
    rows, which the storage inserts in the same transaction as the change that calls for them, and
    :meth:`queued` has them delivered once they are stored."""

    def queue(self, targets: Iterable[str], *, reason: str, reauth: bool = False) -> QueuedRevocations: ...

    async def queued(self, revocations: QueuedRevocations) -> None: ...


def session_target(revocation_key: str) -> str:
    return f"revocationKey:{revocation_key}"


def user_target(client_id: str) -> str:
    return f"clientId:{client_id}"


def parse_target(text: str) -> str:
    """A target as the CLI takes it: ``clientId:x`` or ``revocationKey:x``.

    :raises ValueError: anything else.
    """
    kind, sep, value = text.partition(":")
    if not sep or not value or kind not in ("clientId", "revocationKey"):
        raise ValueError(f"revocation target must be clientId:<id> or revocationKey:<key>, not {text[:80]!r}")
    return text


@dataclass(frozen=True)
class Batch:
    """One revokeTokens call: its rows share key, ``issuedBefore`` and ``allowReauthMargin``."""

    key_name: str
    issued_before: int
    reauth: bool
    rows: tuple[PendingRevocation, ...]

    @property
    def targets(self) -> list[str]:
        return sorted({row.target for row in self.rows})

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"targets": self.targets, "issuedBefore": self.issued_before}
        if self.reauth:
            body["allowReauthMargin"] = True
        return body

    @property
    def ids(self) -> list[int]:
        return [row.id for row in self.rows]


def batches(rows: Iterable[PendingRevocation]) -> list[Batch]:
    """Group rows into calls of at most :data:`MAX_TARGETS_PER_CALL` distinct targets each.

    Only rows with the same ``issuedBefore`` share a call: a later one would revoke tokens issued after
    a revocation was asked for (a user who logged straight back in), an earlier one would miss some.
    """
    groups: dict[tuple[str, int, bool], list[PendingRevocation]] = {}
    for row in rows:
        groups.setdefault((row.key_name, row.issued_before, row.reauth), []).append(row)
    out: list[Batch] = []
    for (key_name, issued_before, reauth), members in groups.items():
        current: list[PendingRevocation] = []
        targets: set[str] = set()
        for row in members:
            if row.target not in targets and len(targets) == MAX_TARGETS_PER_CALL:
                out.append(Batch(key_name, issued_before, reauth, tuple(current)))
                current, targets = [], set()
            current.append(row)
            targets.add(row.target)
        out.append(Batch(key_name, issued_before, reauth, tuple(current)))
    return out


def backoff(attempts: int) -> float:
    """Seconds to wait before attempt ``attempts + 1`` (1, 2, 4 ... up to :data:`MAX_BACKOFF_S`, so a
    revoked connection outlives an Ably outage by at most that)."""
    return min(MAX_BACKOFF_S, 2.0 ** min(attempts, 20))
