"""Who asked for a token, as the core sees it: an authenticated caller, whatever proved it."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Where an identity comes from: ``"account"`` (a registered account: it follows the account),
#: ``"demo"`` (demo login: ends with demo mode), or another source's name, such as ``"oidc:<issuer>"``
#: (kept as it was when the session began).
IdentitySource = str
ACCOUNT: IdentitySource = "account"
DEMO: IdentitySource = "demo"


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller: ``client_id`` is what the token will carry, ``role`` picks the policy."""

    subject: str
    client_id: str
    role: str
    source: IdentitySource = "account"
    #: The ``x-ably-revocation-key`` of this login session's tokens (None outside a session). Not part
    #: of who the caller is: two sessions of one account are equal identities.
    revocation_key: str | None = field(default=None, compare=False)
    #: Allow-listed claims of an upstream OpenID Connect token (``(name, value)`` pairs, sorted) that policy
    #: channel claims may quote as ``{claim:NAME}``; empty for every other source.
    upstream: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    #: Every string value of an upstream token's role claim (policy roles or not: AUTHSERVER_ADMIN_ROLE
    #: is looked for here); empty for every other source.
    claimed_roles: tuple[str, ...] = field(default=(), compare=False)
