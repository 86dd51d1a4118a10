"""``/login``, ``/logout`` and ``/session``: the password login and the session the page sees."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from authserver.core.callers import Identity
from authserver.core.capabilities import OPERATIONS
from authserver.core.channelclaims import for_channel
from authserver.errors import (
    AuthServerError,
    BadRequestError,
    ForbiddenError,
    NotAuthenticatedError,
    RateLimitedError,
)
from authserver.http.common import (
    body_pairs,
    metrics_of,
    origin_allowed,
    services,
)
from authserver.http.forwarding import throttle_address
from authserver.http.responses import json_response
from authserver.http.sessioncookie import mark_logged_out, start_session
from authserver.identity import Credentials, authenticate_any
from authserver.identity.sessions import COOKIE_NAME, LOGGED_OUT
from authserver.wiring import Services

log = logging.getLogger("authserver.http")


async def _login_fields(request: Request) -> tuple[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/json", "application/x-www-form-urlencoded"):
        raise BadRequestError('send the login as JSON {"username", "password"} or as a form')
    fields = _login_pairs(await body_pairs(request, strings_only=True))
    username, password = fields.get("username"), fields.get("password")
    if not username or not password:
        raise BadRequestError("login needs a non-empty 'username' and 'password'")
    return username, password


def _login_pairs(pairs: list[tuple[str, str]]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in ("username", "password"):
            if name in fields:
                raise BadRequestError(f"login field {name!r} is repeated")
            fields[name] = value
    return fields


async def login(request: Request) -> Response:
    try:
        response = await _login(request)
    except AuthServerError as exc:
        outcome = {401: "failed", 403: "forbidden", 429: "throttled", 503: "unavailable"}.get(exc.status, "bad_request")
        metrics_of(request).login(outcome)
        if isinstance(exc, RateLimitedError):
            metrics_of(request).throttled("/login")
        raise
    metrics_of(request).login("success")
    return response


#: The longest start of a username the login throttle keys on (account names are at most 64).
THROTTLE_NAME_CHARS = 128


async def _login(request: Request) -> Response:
    svc = services(request)
    if not origin_allowed(request, svc):
        raise ForbiddenError("cross-origin login refused")
    username, password = await _login_fields(request)
    address = throttle_address(request.scope)
    with svc.login_gate.admit(address):  # 429 beyond a few logins in flight from this address
        identity = await _checked(svc, username, password, address)
    response = json_response({"clientId": identity.client_id, "role": identity.role})
    return await start_session(request, svc, identity, response)


async def _checked(svc: Services, username: str, password: str, address: str) -> Identity:
    """The identity of a right password. The attempt is counted before its password is checked, so
    that concurrent guesses cannot all pass the throttle while earlier ones are being verified; it
    stays counted only when the password was wrong (or the outcome is unknown: an unexpected error)."""
    # NOTE: counted under at most THROTTLE_NAME_CHARS of the name: no account's name is longer, and a
    # flood of long made-up names cannot fill the throttle's memory (they share the counts of their start).
    attempt = await svc.throttle.attempt(username[:THROTTLE_NAME_CHARS], address, svc.clock())
    check = svc.users.demo_login if svc.settings.demo_login else svc.users.verify_login
    try:
        identity = await svc.login_gate.run(lambda: check(username, password))
    except NotAuthenticatedError:
        log.info("login refused for a username of %d characters from %s", len(username), address)
        raise
    except AuthServerError:
        # No wrong password: refused before the check (503, a bad name) or after a right one (disabled).
        await svc.throttle.give_back(attempt)
        raise
    await svc.throttle.succeeded(attempt)
    return identity


async def logout(request: Request) -> Response:
    """End this session and revoke its tokens; ``?everywhere=true`` ends every session of the user and
    revokes all of its tokens ("log out everywhere"). Each session's end and its revocation are stored
    in one transaction; a page still holding an ended session's cookie is told why (403, see
    :func:`authserver.identity.sessions.ended_error`)."""
    svc = services(request)
    if not origin_allowed(request, svc):
        raise ForbiddenError("cross-origin logout refused")
    cookie = request.cookies.get(COOKIE_NAME)
    identity = None
    if request.query_params.get("everywhere") in ("1", "true"):
        identity = await authenticate_any(svc.authenticators, Credentials(cookies=request.cookies), svc.clock())
    if identity is not None:
        await svc.sessions.end_all(identity)  # this session too
    else:
        await svc.sessions.end(cookie)
    response = json_response({})
    # NOTE: not deleted: the browser's other tabs must get the final 403 40304, not a 401 loop (see LOGGED_OUT).
    mark_logged_out(request, svc, response)
    return response


#: The longest channel name ``GET /session?channel=`` looks at (longer ones are a client's mistake: 400).
MAX_CHANNEL_CHARS = 2048


async def session(request: Request) -> Response:
    """Who is logged in, for the page. Always 200 (a fresh page load while logged out is not an error):

    ``{"loggedIn": false, "demoLogin": bool, "ended"?: {"code", "message"}}``, where ``ended`` says why a
    session cookie the browser still sent no longer works; or ``{"loggedIn": true, "clientId", "role",
    "source", "demoLogin"}``. With ``?channel=NAME`` a logged-in answer adds ``"channel": {"name",
    "operations", "all"}``: what the caller's policy capability allows there, decided by
    :mod:`authserver.core.capabilities` (the page has no matcher of its own), plus ``"userClaim"`` and
    ``"publishRate"`` when the role's channel claims set them there. ``/auth`` keeps its 401.
    """
    svc = services(request)
    demo = svc.settings.demo_login
    channel = request.query_params.get("channel")
    if channel is not None and len(channel) > MAX_CHANNEL_CHARS:
        raise BadRequestError(f"channel name must be at most {MAX_CHANNEL_CHARS} characters")
    if request.cookies.get(COOKIE_NAME) == LOGGED_OUT:  # this browser logged out: nothing to explain
        return json_response({"loggedIn": False, "demoLogin": demo})
    credentials = Credentials(cookies=request.cookies, headers=request.headers)
    try:
        identity = await authenticate_any(svc.authenticators, credentials, svc.clock())
    except (NotAuthenticatedError, ForbiddenError) as exc:
        ended = {"code": exc.code, "message": exc.message}
        return json_response({"loggedIn": False, "demoLogin": demo, "ended": ended})
    if identity is None:
        return json_response({"loggedIn": False, "demoLogin": demo})
    body: dict[str, object] = {
        "loggedIn": True,
        "clientId": identity.client_id,
        "role": identity.role,
        "source": identity.source,
        "demoLogin": demo,
    }
    if channel is not None:
        allowance = svc.issuer.allowance(identity)
        operations = allowance.capability.operations_for(channel)
        described: dict[str, object] = {
            "name": channel,
            "operations": sorted(operations),
            "all": operations == OPERATIONS,
        }
        body["channel"] = {**described, **for_channel(allowance.claims, channel)}
    return json_response(body)
