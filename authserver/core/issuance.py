"""The token decision: who asked (an :class:`Identity`), what they asked for (:class:`TokenParams`),
what their role allows and what the key allows -> a :class:`Grant`, then a JWT or a TokenRequest.

Pure: no HTTP, no environment; time comes from the injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from authserver.core.callers import Identity
from authserver.core.capabilities import Capability
from authserver.core.channelclaims import MAX_JWT_BYTES
from authserver.core.keys import AblyKey
from authserver.core.policy import Policy
from authserver.core.tokenrequests import TokenRequest, create_token_request
from authserver.core.tokens import REVOCATION_KEY_CLAIM, IssuedToken, TokenSigner, claims_json, json_string
from authserver.errors import ForbiddenError

#: Clients may ask for shorter tokens than the operator's default, but not for a refresh storm.
CLIENT_TTL_FLOOR_MS = 60_000
_ROLE_CACHE_LIMIT = 4096
#: Ably's ceilings for ``exp - iat``: 24 h for any token, 1 h for a key with revocable tokens (ably-spec 2.4).
MAX_TOKEN_LIFETIME_S = 86_400
MAX_REVOCABLE_LIFETIME_S = 3_600
#: Default back-dating of ``iat``: a signer a few seconds ahead of Ably's clock still issues usable
#: tokens (Ably refuses an ``iat`` in its future with 40001, ably/ably-js#1720).
DEFAULT_IAT_MARGIN_S = 5


@dataclass(frozen=True, slots=True)
class TokenParams:
    """What the client asked for (Ably token params). Hints only: identity never comes from here."""

    client_id: str | None = None
    ttl_ms: int | None = None
    capability: Capability | None = None


class Grant(NamedTuple):
    """What goes into one token (a named tuple: built on every request, cheap to make)."""

    client_id: str
    capability: str  # canonical JSON
    ttl_ms: int
    claims: Mapping[str, str | float] = MappingProxyType({})  # the role's channel claims (JWT only)
    claims_json: str = ""  # ``claims`` as written into a JWT's payload (tokens.claims_json)


@dataclass(frozen=True, slots=True)
class Allowance:
    """The most one identity may ever get, worked out once per (role, clientId)."""

    capability: Capability  # role's capability ∩ key's capability
    capability_json: str
    default_ttl_ms: int
    max_ttl_ms: int
    #: The role's channel claims for this caller (``ably.channel.*``, ``ably.limits.publish...``): JWT only.
    claims: Mapping[str, str | float] = field(default_factory=lambda: MappingProxyType({}))
    #: ``claims`` as written into a JWT's payload, once (:func:`~authserver.core.tokens.claims_json`).
    claims_json: str = ""

    def ttl(self, requested_ms: int | None) -> int:
        if requested_ms is None:
            return self.default_ttl_ms
        return min(max(requested_ms, min(CLIENT_TTL_FLOOR_MS, self.default_ttl_ms)), self.max_ttl_ms)


def revocation_key_for_user(client_id: str) -> str:
    """The revocation key of a token minted outside any session (``authserver token``): the user's."""
    return f"u:{client_id}"


class Issuer:
    """Decides and mints tokens with the first configured key."""

    def __init__(
        self,
        *,
        keys: tuple[AblyKey, ...],
        policy: Policy,
        key_capability: Capability | None,
        token_ttl: int,
        token_max_ttl: int,
        clock: Callable[[], float] = time.time,
        revocable: bool = False,
        iat_margin: int = 0,
    ) -> None:
        """:param revocable: tokens carry ``x-ably-revocation-key`` and live at most 1 h (``exp - iat``).
        :param iat_margin: seconds ``iat`` is back-dated by (clock skew between this host and Ably)."""
        if not keys:
            raise ValueError("Issuer needs at least one key")
        self.key = keys[0]
        self.keys = keys
        self.policy = policy
        self.key_capability = key_capability
        self.revocable = revocable
        self.iat_margin = iat_margin
        cap = MAX_REVOCABLE_LIFETIME_S if revocable else MAX_TOKEN_LIFETIME_S
        #: The longest ``exp - now``: the lifetime cap less the back-dating of ``iat``.
        self.lifetime_cap_ms = (cap - iat_margin) * 1000
        self.token_max_ttl_ms = min(token_max_ttl * 1000, self.lifetime_cap_ms)
        self.token_ttl_ms = min(token_ttl * 1000, self.token_max_ttl_ms)
        self.clock = clock
        self._signer = TokenSigner(self.key)
        # (role, clientId, upstream claims) -> Allowance; bounded, emptied when full
        self._allowances: dict[tuple[str, str, tuple[tuple[str, str], ...]], Allowance] = {}
        #: clientId -> the second of the last revocation of all its tokens (see revocation_cutoff)
        self._revoked_in: dict[str, int] = {}

    def allowance(self, identity: Identity) -> Allowance:
        """The most this identity may ever get: its role's capability ∩ the key's, and its TTL limits.

        :raises ForbiddenError: unknown role, or a role that shares nothing with the key.
        :raises ClientIdError: a clientId outside the safe set.
        """
        cache_key = (identity.role, identity.client_id, identity.upstream)
        allowance = self._allowances.get(cache_key)
        if allowance is None:
            role = self.policy.role(identity.role)
            capability = role.capability_for(identity.client_id)
            if self.key_capability is not None:
                capability = capability.intersect(self.key_capability)
            if capability.is_empty():
                raise ForbiddenError(f"role {identity.role!r} allows nothing that the API key allows", code=40160)
            max_ttl = self.token_max_ttl_ms if role.max_ttl is None else min(self.token_max_ttl_ms, role.max_ttl * 1000)
            # NOTE: every claim of the role goes in, whatever the requested capability: a claim for a
            # channel the token cannot use is inert, and the policy's size check covers them all.
            claims = role.claims.for_caller(identity.client_id, dict(identity.upstream)) if role.claims else {}
            allowance = Allowance(
                capability,
                capability.to_json(),
                min(self.token_ttl_ms, max_ttl),
                max_ttl,
                MappingProxyType(claims),
                claims_json(claims),
            )
            if len(self._allowances) >= _ROLE_CACHE_LIMIT:
                self._allowances.clear()
            self._allowances[cache_key] = allowance
        return allowance

    def grant(self, identity: Identity, params: TokenParams) -> Grant:
        """Decide what to put in the token.

        :raises ForbiddenError: a clientId other than the caller's, a wildcard, or a capability the
            caller may never have (403: Ably clients stop retrying).
        """
        if params.client_id is not None and params.client_id != identity.client_id:
            raise ForbiddenError(
                f"clientId {params.client_id[:64]!r} does not match the authenticated identity", code=40102
            )
        allowance = self.allowance(identity)
        capability = allowance.capability_json
        if params.capability is not None:
            granted = params.capability.intersect(allowance.capability)
            if granted.is_empty():
                raise ForbiddenError("requested capability is not allowed for this user", code=40160)
            capability = granted.to_json()
        return Grant(
            identity.client_id, capability, allowance.ttl(params.ttl_ms), allowance.claims, allowance.claims_json
        )

    def revocation_cutoff(self, targets: Iterable[str]) -> int:
        """``issuedBefore`` for revoking ``targets`` now, and note the users it covers.

        A JWT's ``iat`` has whole seconds, so the cutoff covers every token minted up to the end of this
        second (:meth:`issued_before_at`); a token this issuer mints for a covered user later in the
        same second gets ``iat`` one second later, out of the cutoff's reach, so a user who logs
        straight back in (or renews after a role change) is not revoked again.
        """
        now = self.clock()
        second = int(now)
        if len(self._revoked_in) >= _ROLE_CACHE_LIMIT:
            self._revoked_in = {c: s for c, s in self._revoked_in.items() if s >= second}
        for target in targets:
            kind, _, value = target.partition(":")
            if kind == "clientId":
                self._revoked_in[value] = second
        return self.issued_before_at(now, self.iat_margin)

    @staticmethod
    def issued_before_at(now: float, iat_margin: int) -> int:
        """``issuedBefore`` for a revocation at ``now``: after the ``iat`` of every token minted until the
        end of this second (``iat`` is back-dated by ``iat_margin``), never in the future."""
        return min((int(now) - iat_margin + 1) * 1000, int(now * 1000))

    def jwt(self, identity: Identity, params: TokenParams) -> IssuedToken:
        grant = self.grant(identity, params)
        now = int(self.clock())
        issued = now - self.iat_margin
        if self._revoked_in.get(grant.client_id) == now:
            issued += 1  # minted after a revocation in this same second: not covered by it
        expires = now + grant.ttl_ms // 1000
        extra = grant.claims_json  # the role's claims, written once per allowance
        if self.revocable:
            revocation_key = identity.revocation_key or revocation_key_for_user(identity.client_id)
            extra += f',"{REVOCATION_KEY_CLAIM}":{json_string(revocation_key)}'
        token = self._signer.sign_written(grant.capability, grant.client_id, issued, expires, extra)
        if params.capability is not None and len(token) > MAX_JWT_BYTES:
            # The policy's load-time check bounds the role's own capability; a request may name more resources.
            raise ForbiddenError(
                f"the requested capability makes the JWT {len(token)} bytes, over Ably's {MAX_JWT_BYTES}-byte "
                "guidance; ask for fewer channels, or for none to get the role's capability"
            )
        return IssuedToken(token, self.key.name, issued * 1000, expires * 1000, grant.capability, grant.client_id)

    def token_request(self, identity: Identity, params: TokenParams) -> TokenRequest:
        """A signed TokenRequest (for an Ably native token).

        :raises ForbiddenError: the caller's role has channel claims or publish rates, which only a JWT
            can carry (a native token without them would escape the role's publish limits).
        """
        if self.allowance(identity).claims:
            raise ForbiddenError(
                f"role {identity.role!r} has channel claims or publish limits, which only a JWT carries; "
                "ask for format=jwt (the default) instead of a TokenRequest"
            )
        grant = self.grant(identity, params)
        return create_token_request(
            self.key,
            capability=grant.capability,
            client_id=grant.client_id,
            ttl_ms=grant.ttl_ms,
            now_ms=int(self.clock() * 1000),
        )
