"""Token revocation (``POST /keys/{keyName}/revokeTokens``): targets and the revocations in force.

A revocation refuses, from its ``appliesAt`` on, every token of that key whose target matches and that
was issued before ``issuedBefore``; tokens issued later are fine. Each call is a rule of its own (Ably's
token revocation docs; ably-spec 8.3). A rule is forgotten once every token it could cover has expired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from authserver.errors import BadRequestError
from authserver.sandbox.grants import JudgedCredential
from authserver.sandbox.limits import LimitError

#: Ably refuses an ``issuedBefore`` more than an hour in the past (TokenRevocationOptions), 40003 here.
MAX_ISSUED_BEFORE_AGE_MS = 3_600_000

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
    """The revocation rules in force: each ``revokeTokens`` call for a target is its own rule, as on Ably.

    A token is revoked once some rule covering it applies (its ``appliesAt`` has passed). Ably answers every
    target with that call's own ``issuedBefore`` and ``appliesAt`` (``TokenRevocationSuccessResult``), so a
    later call never moves an earlier rule's ``appliesAt`` onto its own, later ``issuedBefore``: an immediate
    logout followed by a role change with ``allowReauthMargin`` still lets the connection renew in band.
    A rule another one of the same target makes redundant (a cut-off no later, applying no sooner) is dropped.
    """

    def __init__(self, max_entries: int, *, max_token_ttl_ms: int) -> None:
        self._rules: dict[tuple[str, RevocationTarget], list[Revocation]] = {}
        self._max_entries = max_entries
        self._max_token_ttl_ms = max_token_ttl_ms

    def __len__(self) -> int:
        return sum(len(rules) for rules in self._rules.values())

    def add(self, revocation: Revocation, *, now_ms: int) -> Revocation:
        """Record ``revocation`` as a rule of its own and return it.

        :raises LimitError: the sandbox already remembers ``max_revocations`` live rules.
        """
        self._forget_expired(now_ms)
        slot = (revocation.key_name, revocation.target)
        rules = self._rules.get(slot, [])
        if any(_subsumes(rule, revocation) for rule in rules):
            return revocation
        kept = [rule for rule in rules if not _subsumes(revocation, rule)]
        if len(self) - len(rules) + len(kept) >= self._max_entries:
            raise LimitError(f"too many revocations (max_revocations={self._max_entries})")
        self._rules[slot] = [*kept, revocation]
        return revocation

    def _forget_expired(self, now_ms: int) -> None:
        # A token issued before issued_before has expired by issued_before + the longest TTL.
        for slot, rules in list(self._rules.items()):
            live = [rule for rule in rules if rule.issued_before_ms + self._max_token_ttl_ms >= now_ms]
            if live:
                self._rules[slot] = live
            else:
                del self._rules[slot]

    def find(self, grant: JudgedCredential) -> Revocation | None:
        """The rule covering ``grant`` that applies soonest, applying already or not."""
        found = [rule for rules in self._rules.values() for rule in rules if rule.covers(grant)]
        return min(found, key=lambda r: r.applies_at_ms) if found else None

    def revoked(self, grant: JudgedCredential, *, now_ms: int) -> bool:
        """Whether ``grant`` is refused at ``now_ms``."""
        found = self.find(grant)
        return found is not None and found.applies_at_ms <= now_ms


def _subsumes(rule: Revocation, other: Revocation) -> bool:
    """Whether ``rule`` revokes everything ``other`` does, no later (so ``other`` adds nothing)."""
    return rule.issued_before_ms >= other.issued_before_ms and rule.applies_at_ms <= other.applies_at_ms
