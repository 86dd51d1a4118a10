"""The token decision: who asked (an :class:`Identity`), what they asked for (:class:`TokenParams`),
what their role allows and what the key allows -> a :class:`Grant`, then a JWT or a TokenRequest.

Pure: no HTTP, no environment; time comes from the injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from .capabilities import Capability
from .errors import ForbiddenError
from .identity import Identity
from .keys import AblyKey
from .policy import Policy
from .tokenrequests import TokenRequest, create_token_request
from .tokens import IssuedToken, TokenSigner

#: Clients may ask for shorter tokens than the operator's default, but not for a refresh storm.
CLIENT_TTL_FLOOR_MS = 60_000
_ROLE_CACHE_LIMIT = 4096


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


@dataclass(frozen=True, slots=True)
class Allowance:
    """The most one identity may ever get, worked out once per (role, clientId)."""

    capability: Capability  # role's capability ∩ key's capability
    capability_json: str
    default_ttl_ms: int
    max_ttl_ms: int

    def ttl(self, requested_ms: int | None) -> int:
        if requested_ms is None:
            return self.default_ttl_ms
        return min(max(requested_ms, min(CLIENT_TTL_FLOOR_MS, self.default_ttl_ms)), self.max_ttl_ms)


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
    ) -> None:
        if not keys:
            raise ValueError("Issuer needs at least one key")
        self.key = keys[0]
        self.policy = policy
        self.key_capability = key_capability
        self.token_ttl_ms = token_ttl * 1000
        self.token_max_ttl_ms = token_max_ttl * 1000
        self.clock = clock
        self._signer = TokenSigner(self.key)
        # (role, clientId) -> Allowance; bounded, emptied when full
        self._allowances: dict[tuple[str, str], Allowance] = {}

    def allowance(self, identity: Identity) -> Allowance:
        """The most this identity may ever get: its role's capability ∩ the key's, and its TTL limits.

        :raises ForbiddenError: unknown role, or a role that shares nothing with the key.
        :raises ClientIdError: a clientId outside the safe set.
        """
        cache_key = (identity.role, identity.client_id)
        allowance = self._allowances.get(cache_key)
        if allowance is None:
            role = self.policy.role(identity.role)
            capability = role.capability_for(identity.client_id)
            if self.key_capability is not None:
                capability = capability.intersect(self.key_capability)
            if capability.is_empty():
                raise ForbiddenError(f"role {identity.role!r} allows nothing that the API key allows", code=40160)
            max_ttl = self.token_max_ttl_ms if role.max_ttl is None else min(self.token_max_ttl_ms, role.max_ttl * 1000)
            allowance = Allowance(capability, capability.to_json(), min(self.token_ttl_ms, max_ttl), max_ttl)
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
        return Grant(identity.client_id, capability, allowance.ttl(params.ttl_ms))

    def jwt(self, identity: Identity, params: TokenParams) -> IssuedToken:
        grant = self.grant(identity, params)
        issued = int(self.clock())
        expires = issued + grant.ttl_ms // 1000
        token = self._signer.sign(
            capability=grant.capability, client_id=grant.client_id, issued_at=issued, expires_at=expires
        )
        return IssuedToken(token, self.key.name, issued * 1000, expires * 1000, grant.capability, grant.client_id)

    def token_request(self, identity: Identity, params: TokenParams) -> TokenRequest:
        grant = self.grant(identity, params)
        return create_token_request(
            self.key,
            capability=grant.capability,
            client_id=grant.client_id,
            ttl_ms=grant.ttl_ms,
            now_ms=int(self.clock() * 1000),
        )
