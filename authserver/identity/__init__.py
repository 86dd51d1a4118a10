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
from typing import Literal, Protocol

IdentitySource = Literal["account", "demo"]


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller: ``client_id`` is what the token will carry, ``role`` picks the policy."""

    subject: str
    client_id: str
    role: str
    source: IdentitySource = "account"


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request presented, independent of the web framework. Values are secret: no repr."""

    cookies: Mapping[str, str] = field(default_factory=dict, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


class Authenticator(Protocol):
    """An identity source. Called on the event loop for every ``/auth``: it must not block (no network
    round trip per request; fetch and cache keys ahead, as an upstream-JWT verifier would)."""

    def authenticate(self, credentials: Credentials, now: float) -> Identity | None: ...


def authenticate_any(
    authenticators: tuple[Authenticator, ...], credentials: Credentials, now: float
) -> Identity | None:
    """The first authenticator that recognises the credentials decides."""
    for authenticator in authenticators:
        identity = authenticator.authenticate(credentials, now)
        if identity is not None:
            return identity
    return None
