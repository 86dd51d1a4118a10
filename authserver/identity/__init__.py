"""Who the caller is. Identity comes from the server side only (a session, an upstream token),
never from a token parameter the client sends.

An :class:`Authenticator` looks at the request's credentials and returns an
:class:`~authserver.core.callers.Identity`, returns ``None`` when the credentials are not for it, or
raises ``NotAuthenticatedError`` (401, clients retry) / ``ForbiddenError`` (403, final). New identity
sources plug in beside the session authenticator without touching the HTTP layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from authserver.core.callers import Identity


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
