"""Verified upstream claims -> an :class:`~authserver.identity.Identity`. Pure.

The clientId is the issuer's ``client_id_prefix`` followed by one claim (default ``sub``), and must be
in the same safe set as account clientIds; it is never taken from a token parameter. The role is the
first value of the role claim (a string or a list of strings) that names a policy role, else the
issuer's role, else the policy's default role. A few allow-listed claims (``email``, ``name``...) are
carried in the identity, for policy channel claims that quote them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from authserver.core.callers import Identity
from authserver.core.channelclaims import MAX_UPSTREAM_CLAIM_CHARS, UPSTREAM_CLAIMS, is_unicode_text
from authserver.core.clientids import check_client_id
from authserver.core.issuers import UpstreamIssuer
from authserver.core.policy import Policy
from authserver.errors import ClientIdError, ForbiddenError

MAX_ROLE_VALUES = 100


def claim_value(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by name; a dotted name (``realm_access.roles``, Keycloak) walks nested objects when there
    is no top-level claim of that exact name (namespaced claims such as ``https://x.example/roles``)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def claimed_roles(claims: Mapping[str, Any], upstream: UpstreamIssuer) -> tuple[str, ...]:
    """The string values of the issuer's role claim (at most :data:`MAX_ROLE_VALUES`), in order."""
    if upstream.role_claim is None:
        return ()
    value = claim_value(claims, upstream.role_claim)
    values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return tuple(candidate for candidate in values[:MAX_ROLE_VALUES] if isinstance(candidate, str))


def role_for(claims: Mapping[str, Any], upstream: UpstreamIssuer, policy: Policy) -> str:
    for candidate in claimed_roles(claims, upstream):
        if candidate in policy.roles:
            return candidate
    return upstream.role or policy.default_role


def identity_from_claims(claims: Mapping[str, Any], upstream: UpstreamIssuer, policy: Policy) -> Identity:
    """The caller these verified claims describe.

    :raises ForbiddenError: the clientId claim is missing, not a string or outside the safe set (403:
        a valid token that can never get an Ably token, so clients should stop retrying).
    """
    value = claim_value(claims, upstream.client_id_claim)
    if not isinstance(value, str):
        raise ForbiddenError(f"the token has no string {upstream.client_id_claim!r} claim to use as the clientId")
    try:
        client_id = check_client_id(upstream.client_id_for(value))
    except ClientIdError as exc:
        claim = upstream.client_id_claim
        raise ForbiddenError(f"the token's {claim!r} claim is not a usable clientId: {exc.message}") from None
    subject = claims.get("sub")
    return Identity(
        subject=f"{upstream.issuer}#{subject if isinstance(subject, str) else client_id}",
        client_id=client_id,
        role=role_for(claims, upstream, policy),
        source=upstream.source,
        upstream=carried_claims(claims),
        claimed_roles=claimed_roles(claims, upstream),
    )


def carried_claims(claims: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The allow-listed upstream claims policy channel claims may quote: strings of a bounded length and
    valid Unicode only (anything else counts as missing, and the channel claim quoting it is left out)."""
    return tuple(
        (name, value)
        for name in sorted(UPSTREAM_CLAIMS)
        if isinstance(value := claims.get(name), str)
        and len(value) <= MAX_UPSTREAM_CLAIM_CHARS
        and is_unicode_text(value)
    )
