"""The session cookie: how a login starts a session (password login and provider login alike) and what
logout leaves in its place. Its attributes are written here once."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from authserver.core.callers import Identity
from authserver.identity.sessions import COOKIE_NAME, LOGGED_OUT
from authserver.wiring import Services

log = logging.getLogger("authserver.http")


def secure_cookie(request: Request, svc: Services) -> bool:
    mode = svc.settings.cookie_secure
    return mode == "true" or (mode == "auto" and request.url.scheme == "https")


async def start_session(
    request: Request, svc: Services, identity: Identity, response: Response, *, sid: str | None = None
) -> Response:
    """End the session the browser had, begin one for ``identity`` (``sid``: the provider's session id of
    a provider login) and set its cookie on ``response``."""
    previous = request.cookies.get(COOKIE_NAME)
    if previous and previous != LOGGED_OUT:
        await svc.sessions.end(previous, "switched")  # switching users ends the old session (and its tokens)
    cookie = await svc.sessions.create(identity, svc.clock(), sid=sid)
    log.info("login: clientId=%s role=%s source=%s", identity.client_id, identity.role, identity.source)
    _set(request, svc, response, cookie)
    return response


def mark_logged_out(request: Request, svc: Services, response: Response) -> None:
    """Replace the session cookie with :data:`~authserver.identity.sessions.LOGGED_OUT` (see there why)."""
    _set(request, svc, response, LOGGED_OUT)


def _set(request: Request, svc: Services, response: Response, value: str) -> None:
    response.set_cookie(
        COOKIE_NAME,
        value,
        max_age=svc.settings.session_ttl,
        httponly=True,
        samesite="strict",
        secure=secure_cookie(request, svc),
        path="/",
    )
