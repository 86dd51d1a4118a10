"""Thin endpoints: parse the request, call the domain, map the result. Nothing else.

The storage layer keeps blocking work off the event loop (SQLite writes and password hashing run
in worker threads, PostgreSQL is awaited); a session resolved moments ago is answered from memory.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType
from urllib.parse import parse_qsl

from starlette.requests import Request, cookie_parser
from starlette.responses import Response

from authserver.core.callers import Identity
from authserver.core.capabilities import OPERATIONS
from authserver.core.channelclaims import for_channel
from authserver.errors import (
    AuthServerError,
    BadRequestError,
    CapabilityError,
    ForbiddenError,
    NotAuthenticatedError,
    RateLimitedError,
    UnavailableError,
)
from authserver.http.bodies import read_bounded
from authserver.http.forwarding import throttle_address
from authserver.http.params import known_params, parse_token_params
from authserver.http.responses import PreparedResponse, json_response
from authserver.http.sessioncookie import mark_logged_out, start_session
from authserver.identity import Credentials, authenticate_any
from authserver.identity.sessions import COOKIE_NAME, LOGGED_OUT
from authserver.infra.audit import audit_issued, audit_refused
from authserver.infra.metrics import Metrics
from authserver.wiring import Services

log = logging.getLogger("authserver.http")
MAX_BODY = 16 * 1024
MAX_FIELDS = 100


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def _body_too_large() -> BadRequestError:
    return BadRequestError(f"request body must be at most {MAX_BODY} bytes", code=40009, status=413)


async def _read_body(request: Request) -> bytes:
    """The request body, refused before it is buffered when it is larger than ``MAX_BODY``."""
    return await read_bounded(request, MAX_BODY, _body_too_large)


def _json_pairs(body: bytes, *, strings_only: bool) -> list[tuple[str, str]]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequestError("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequestError("JSON body must be an object")
    pairs: list[tuple[str, str]] = []
    for name, value in data.items():
        if isinstance(value, str):
            text = value
        elif strings_only:
            raise BadRequestError(f"field {name[:40]!r} must be a string")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            text = str(value)
        elif name == "capability" and isinstance(value, dict):
            text = json.dumps(value)  # a capability sent as an object rather than a JSON string
        else:
            continue
        try:
            (name + text).encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequestError(f"field {name[:40]!r} is not valid UTF-8") from None
        pairs.append((name, text))
    return pairs


async def _body_pairs(request: Request, *, strings_only: bool = False) -> list[tuple[str, str]]:
    """Fields of a POST body: form-encoded (what both Ably clients send) or a JSON object."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await _read_body(request)
    if not body:
        return []
    if content_type == "application/json":
        return _json_pairs(body, strings_only=strings_only)
    if content_type in ("application/x-www-form-urlencoded", ""):
        try:
            return parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
        except UnicodeDecodeError:
            raise BadRequestError("form body is not valid UTF-8") from None
        except ValueError:
            raise BadRequestError(f"form body has more than {MAX_FIELDS} fields") from None
    raise BadRequestError(f"unsupported Content-Type {content_type[:60]!r}; send a form or JSON")


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


@lru_cache(maxsize=256)
def _parsed_cookies(header: str) -> Mapping[str, str]:
    """A ``Cookie`` header parsed as Starlette parses it, remembered: a client sends the same header on
    every renewal (read-only, since the answer is shared)."""
    return MappingProxyType(cookie_parser(header))


def request_cookies(request: Request) -> Mapping[str, str]:
    """The request's cookies, as ``request.cookies`` gives them (several ``Cookie`` headers merged)."""
    headers = request.headers.getlist("cookie")
    if len(headers) == 1:
        return _parsed_cookies(headers[0])
    cookies: dict[str, str] = {}
    for header in headers:
        cookies.update(_parsed_cookies(header))
    return cookies


async def _identity(request: Request, svc: Services) -> Identity:
    credentials = Credentials(cookies=request_cookies(request), headers=request.headers)
    identity = await authenticate_any(svc.authenticators, credentials, svc.clock())
    if identity is None:
        raise NotAuthenticatedError("not logged in", code=40101)
    return identity


def metrics_of(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


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
        seen.update(known_params(await _body_pairs(request), source="body"))
    params, fmt = parse_token_params(seen)
    if fmt == "tokenrequest":
        token_request = svc.issuer.token_request(identity, params)
        _issued(request, identity, "tokenrequest", token_request.capability, token_request.ttl)
        return json_response(token_request.to_dict())
    issued = svc.issuer.jwt(identity, params)
    ttl_ms = issued.expires_ms - issued.issued_ms
    if fmt == "jwt" or (fmt is None and _wants_jwt(request.headers.get("accept", "")[:200])):
        _issued(request, identity, "jwt", issued.capability, ttl_ms)
        return PreparedResponse(issued.token, "application/jwt")
    _issued(request, identity, "details", issued.capability, ttl_ms)
    return PreparedResponse(issued.details_json(), "application/json")


def _issued(request: Request, identity: Identity, fmt: str, capability: str, ttl_ms: int) -> None:
    metrics_of(request).token_issued(fmt, identity.source)
    audit_issued(identity, fmt, capability, ttl_ms)


TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a grant type name
#: The subject token types /token accepts (RFC 8693 3): all of them are an upstream JWT here.
SUBJECT_TOKEN_TYPES = frozenset(
    {
        "urn:ietf:params:oauth:token-type:jwt",
        "urn:ietf:params:oauth:token-type:access_token",
        "urn:ietf:params:oauth:token-type:id_token",
    }
)
_TOKEN_FIELDS = ("grant_type", "subject_token", "subject_token_type", "scope", "capability", "ttl")


class OAuthError(AuthServerError):
    """An RFC 6749 (5.2) error of ``POST /token``: ``error`` is the OAuth error code."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description, code=status * 100, status=status)
        self.error = error


def oauth_error_response(exc: OAuthError) -> Response:
    return json_response({"error": exc.error, "error_description": exc.message}, exc.status)


def _as_oauth_error(exc: AuthServerError) -> OAuthError:
    if isinstance(exc, OAuthError):
        return exc
    if isinstance(exc, CapabilityError) or exc.code == 40160:
        return OAuthError("invalid_scope", exc.message)
    if isinstance(exc, NotAuthenticatedError | ForbiddenError):
        return OAuthError("invalid_grant", exc.message)  # the subject token cannot be exchanged
    if isinstance(exc, UnavailableError):
        return OAuthError("temporarily_unavailable", exc.message, 503)
    if isinstance(exc, BadRequestError):
        return OAuthError("invalid_request", exc.message)
    return OAuthError("server_error", "internal error", 500)


async def _exchange_fields(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send the token exchange as an application/x-www-form-urlencoded form")
    fields: dict[str, str] = {}
    for name, value in await _body_pairs(request):
        if name in _TOKEN_FIELDS:
            if name in fields:
                raise OAuthError("invalid_request", f"parameter {name!r} is repeated")
            fields[name] = value
    return fields


async def token(request: Request) -> Response:
    """OAuth 2.0 Token Exchange (RFC 8693) for backends: an upstream JWT in, an Ably JWT out.

    Form fields ``grant_type`` (token-exchange), ``subject_token``, ``subject_token_type`` and optional
    ``capability`` (or ``scope``: Ably capability JSON) and ``ttl`` (ms, as on /auth). Answers RFC 8693
    JSON plus the Ably TokenDetails fields; errors in RFC 6749 shape.
    """
    svc = services(request)
    identity: Identity | None = None
    try:
        fields = await _exchange_fields(request)
        grant_type = fields.get("grant_type")
        if grant_type is None:
            raise OAuthError("invalid_request", "grant_type is required")
        if grant_type != TOKEN_EXCHANGE:
            raise OAuthError("unsupported_grant_type", f"grant_type must be {TOKEN_EXCHANGE}")
        subject_token = fields.get("subject_token")
        if not subject_token:
            raise OAuthError("invalid_request", "subject_token is required")
        subject_type = fields.get("subject_token_type")
        if subject_type is None:
            raise OAuthError("invalid_request", "subject_token_type is required")
        if subject_type not in SUBJECT_TOKEN_TYPES:
            raise OAuthError("invalid_request", "subject_token_type is not supported (use a JWT, access or ID token)")
        if "scope" in fields and "capability" in fields:
            raise OAuthError("invalid_request", "give either scope or capability, not both")
        seen = {"ttl": fields.get("ttl", ""), "capability": fields.get("capability") or fields.get("scope", "")}
        params, _ = parse_token_params(seen)
        if svc.upstream is None:
            raise OAuthError("invalid_grant", "no identity provider is configured (OIDC_ISSUER)")
        identity = await svc.upstream.identity(subject_token, svc.clock())
        issued = svc.issuer.jwt(identity, params)
    except AuthServerError as exc:
        metrics_of(request).token_refused(exc.code, "token-exchange")
        audit_refused(identity, exc, "token-exchange")
        oauth = _as_oauth_error(exc)
        if oauth.status >= 500:
            log.error("token exchange failed: %s", type(exc).__name__)
        return oauth_error_response(oauth)
    _issued(request, identity, "token-exchange", issued.capability, issued.expires_ms - issued.issued_ms)
    details = json.loads(issued.details_json())
    body = {
        "access_token": issued.token,
        "issued_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_type": "Bearer",
        "expires_in": (issued.expires_ms - issued.issued_ms) // 1000,
        **details,
    }
    return json_response(body)


def _origin_allowed(request: Request, svc: Services) -> bool:
    """CSRF defence for state-changing POSTs (beside the SameSite=Strict cookie)."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser, or a same-origin navigation of an old browser
    origin = origin.rstrip("/").lower()
    return origin == f"{request.url.scheme}://{request.headers.get('host', '')}".lower() or (
        origin in svc.settings.allowed_origins
    )


async def _login_fields(request: Request) -> tuple[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/json", "application/x-www-form-urlencoded"):
        raise BadRequestError('send the login as JSON {"username", "password"} or as a form')
    fields = _login_pairs(await _body_pairs(request, strings_only=True))
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


async def _login(request: Request) -> Response:
    svc = services(request)
    if not _origin_allowed(request, svc):
        raise ForbiddenError("cross-origin login refused")
    username, password = await _login_fields(request)
    address = throttle_address(request.scope, username)
    await svc.throttle.check(username, address, svc.clock())
    check = svc.users.demo_login if svc.settings.demo_login else svc.users.verify_login
    try:
        identity = await svc.login_gate.run(lambda: check(username, password))
    except NotAuthenticatedError:
        await svc.throttle.failed(username, address, svc.clock())
        log.info("login refused for a username of %d characters from %s", len(username), address)
        raise
    await svc.throttle.succeeded(username, address)
    response = json_response({"clientId": identity.client_id, "role": identity.role})
    return await start_session(request, svc, identity, response)


async def logout(request: Request) -> Response:
    """End this session and revoke its tokens; ``?everywhere=true`` ends every session of the user and
    revokes all of its tokens ("log out everywhere"). Each session's end and its revocation are stored
    in one transaction; a page still holding an ended session's cookie is told why (403, see
    :func:`authserver.identity.sessions.ended_error`)."""
    svc = services(request)
    if not _origin_allowed(request, svc):
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


async def metrics(request: Request) -> Response:
    """Prometheus text format, summed over every worker of this service."""
    body, media_type = metrics_of(request).render()
    return Response(body, media_type=media_type, headers={"Cache-Control": "no-store"})


async def healthz(request: Request) -> Response:
    """Liveness of this process (``pid``: which worker answered)."""
    svc = services(request)
    return json_response(
        {"status": "ok", "keyName": svc.issuer.key.name, "development": svc.settings.development, "pid": os.getpid()}
    )
