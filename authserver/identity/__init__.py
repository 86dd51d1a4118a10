"""Who the caller is. Identity comes from the server side only (a session, an upstream token),
never from a token parameter the client sends.

An :class:`Authenticator` looks at the request's credentials and returns an :class:`Identity`,
returns ``None`` when the credentials are not for it, or raises ``NotAuthenticatedError`` (401,
clients retry) / ``ForbiddenError`` (403, final). New identity sources plug in beside the session
authenticator without touching the HTTP layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

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


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request presented, independent of the web framework. Values are secret: no repr."""

    cookies: Mapping[str, str] = field(default_factory=dict, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


class Authenticator(Protocol):
    """An identity source, awaited for every ``/auth``. It may await its store, but should answer a
    caller it has recently seen from memory without awaiting anything (the hot path of ``/auth``),
    and must never block the event loop."""

    async def authenticate(self, credentials: Credentials, now: float) -> Identity | None: ...


async def authenticate_any(
    authenticators: tuple[Authenticator, ...], credentials: Credentials, now: float
) -> Identity | None:
    """The first authenticator that recognises the credentials decides."""
    for authenticator in authenticators:
        identity = await authenticator.authenticate(credentials, now)
        if identity is not None:
            return identity
    return None
