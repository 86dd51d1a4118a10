"""Token revocation (``POST /keys/{keyName}/revokeTokens``): targets and the revocations in force.

A revocation refuses every token of that key whose target matches and that was issued before
``issuedBefore``; tokens issued later are fine. Revocation works with every key of the sandbox (as if
each had revocable tokens enabled), but the 1 h TTL limit Ably puts on revocable tokens is not applied
(see :mod:`.judge`). An entry is forgotten once every token it could cover has expired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from authserver.errors import BadRequestError
from authserver.sandbox.grants import JudgedCredential
from authserver.sandbox.limits import LimitError

TargetKind = Literal["clientId", "revocationKey"]
_KINDS: tuple[TargetKind, ...] = ("clientId", "revocationKey")


@dataclass(frozen=True)
class RevocationTarget:
    """``clientId:<id>`` or ``revocationKey:<key>`` (``channel:`` targets are not supported here)."""

    kind: TargetKind
    value: str

    @classmethod
    def parse(cls, text: object) -> RevocationTarget:
        """:raises BadRequestError: 40000 for a target that is not ``type:value`` of a supported type."""
        if not isinstance(text, str):
            raise BadRequestError("revocation target must be a string 'type:value'")
        kind, sep, value = text.partition(":")
        if not sep or not value:
            raise BadRequestError(f"revocation target {text[:80]!r} must be 'type:value'")
        for known in _KINDS:
            if kind == known:
                return cls(known, value)
        raise BadRequestError(f"revocation target type {kind[:40]!r} is not supported (clientId, revocationKey)")

    def matches(self, grant: JudgedCredential) -> bool:
        if self.kind == "clientId":
            return grant.client_id == self.value
        return grant.revocation_key == self.value

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True)
class Revocation:
    key_name: str
    target: RevocationTarget
    issued_before_ms: int
    applies_at_ms: int

    def covers(self, grant: JudgedCredential) -> bool:
        """Whether ``grant`` is one of the tokens this revocation refuses (whenever it applies).

        A JWT's ``iat`` has whole-second precision, so for JWTs ``issuedBefore`` is truncated to its
        second: a JWT minted in the same second as the revocation counts as issued after it (otherwise
        a client could not get a usable token until the next second).
        """
        issued_before = self.issued_before_ms
        if grant.kind == "jwt":
            issued_before -= issued_before % 1000
        return (
            grant.kind != "key"
            and grant.key_name == self.key_name
            and grant.issued_ms < issued_before
            and self.target.matches(grant)
        )


class Revocations:
    """The revocations in force, one per (key, target); a later revocation of a target widens it."""

    def __init__(self, max_entries: int, *, max_token_ttl_ms: int) -> None:
        self._entries: dict[tuple[str, RevocationTarget], Revocation] = {}
        self._max_entries = max_entries
        self._max_token_ttl_ms = max_token_ttl_ms

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, revocation: Revocation, *, now_ms: int) -> Revocation:
        """Record ``revocation`` and return the entry now in force for its target.

        :raises LimitError: the sandbox already remembers ``max_revocations`` live targets.
        """
        # A token issued before issued_before has expired by issued_before + the longest TTL.
        for slot, entry in list(self._entries.items()):
            if entry.issued_before_ms + self._max_token_ttl_ms < now_ms:
                del self._entries[slot]
        slot = (revocation.key_name, revocation.target)
        current = self._entries.get(slot)
        if current is None and len(self._entries) >= self._max_entries:
            raise LimitError(f"too many revocations (max_revocations={self._max_entries})")
        if current is not None:
            revocation = Revocation(
                revocation.key_name,
                revocation.target,
                max(current.issued_before_ms, revocation.issued_before_ms),
                min(current.applies_at_ms, revocation.applies_at_ms),
            )
        self._entries[slot] = revocation
        return revocation

    def find(self, grant: JudgedCredential) -> Revocation | None:
        """The revocation covering ``grant`` that applies soonest, applying already or not."""
        found = [r for r in self._entries.values() if r.covers(grant)]
        return min(found, key=lambda r: r.applies_at_ms) if found else None

    def revoked(self, grant: JudgedCredential, *, now_ms: int) -> bool:
        """Whether ``grant`` is refused at ``now_ms``."""
        found = self.find(grant)
        return found is not None and found.applies_at_ms <= now_ms
