"""``/auth``: the authUrl, a token for the caller the request's credentials name."""

from __future__ import annotations

import logging
from functools import lru_cache

from starlette.requests import Request
from starlette.responses import Response

from authserver.core.callers import Identity
from authserver.errors import (
    AuthServerError,
    NotAuthenticatedError,
)
from authserver.http.common import (
    body_pairs,
    count_issued,
    metrics_of,
    request_cookies,
    services,
)
from authserver.http.params import known_params, parse_token_params
from authserver.http.responses import PreparedResponse, json_response
from authserver.identity import Credentials, authenticate_any
from authserver.identity.sessions import COOKIE_NAME
from authserver.infra.audit import audit_refused
from authserver.wiring import Services

log = logging.getLogger("authserver.http")


@lru_cache(maxsize=256)
def _wants_jwt(accept: str) -> bool:
    """True when the Accept header prefers application/jwt over JSON."""
    best_jwt, best_json = -1.0, -1.0
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.strip().lower()
        if media == "application/jwt":
            best_jwt = max(best_jwt, quality)
        elif media in ("application/json", "application/*", "*/*"):
            best_json = max(best_json, quality if media == "application/json" else quality - 0.001)
    return best_jwt > 0 and best_jwt > best_json


#: Where a cross-origin request without its cookie is explained (the page in this repository's docs/).
TROUBLESHOOTING = "docs/troubleshooting.md"
NO_COOKIE_CROSS_ORIGIN = (
    "not logged in: no session cookie arrived with this cross-origin request (see "
    + TROUBLESHOOTING
    + "); ably-js sends cookies cross-origin only when authHeaders has a key spelled 'authorization'"
    " in lower case, and a SameSite=Strict cookie never goes cross-site: send a bearer instead"
)


async def _identity(request: Request, svc: Services) -> Identity:
    cookies = request_cookies(request)
    credentials = Credentials(cookies=cookies, headers=request.headers)
    identity = await authenticate_any(svc.authenticators, credentials, svc.clock())
    if identity is None:
        if COOKIE_NAME not in cookies and _cross_origin(request, svc):
            raise NotAuthenticatedError(NO_COOKIE_CROSS_ORIGIN, code=40101)
        raise NotAuthenticatedError("not logged in", code=40101)
    return identity


def _cross_origin(request: Request, svc: Services) -> bool:
    """The request came from a page on another origin (a browser says so in ``Origin``)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return False
    origin = origin.rstrip("/").lower()
    own = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
    return origin not in (own, (svc.settings.public_url or "").lower())


async def auth(request: Request) -> Response:
    """The authUrl: a token for the logged-in caller, in the format the client prefers; each
    answer is counted and audited (never with the token)."""
    identity: Identity | None = None
    svc = services(request)
    try:
        identity = await _identity(request, svc)
        return await _auth(request, identity, svc)
    except AuthServerError as exc:
        fmt = request.query_params.get("format")
        metrics_of(request).token_refused(exc.code, fmt)
        audit_refused(identity, exc, fmt)
        raise


async def _auth(request: Request, identity: Identity, svc: Services) -> Response:
    if svc.auth_limits is not None:
        await svc.auth_limits.check(identity.client_id, request.client.host if request.client else "unknown")
    seen = known_params(request.query_params.multi_items(), source="query") if request.scope["query_string"] else {}
    if request.method == "POST":
        # Ably clients merge the authUrl's query with their params, later wins (RSA8c2).
        seen.update(known_params(await body_pairs(request), source="body"))
    params, fmt = parse_token_params(seen)
    if fmt == "tokenrequest":
        token_request = svc.issuer.token_request(identity, params)
        count_issued(request, identity, "tokenrequest", token_request.capability, token_request.ttl)
        return json_response(token_request.to_dict())
    issued = svc.issuer.jwt(identity, params)
    ttl_ms = issued.expires_ms - issued.issued_ms
    if fmt == "jwt" or (fmt is None and _wants_jwt(request.headers.get("accept", "")[:200])):
        count_issued(request, identity, "jwt", issued.capability, ttl_ms)
        return PreparedResponse(issued.token, "application/jwt")
    count_issued(request, identity, "details", issued.capability, ttl_ms)
    return PreparedResponse(issued.details_json(), "application/json")
