"""``POST /token``: the OAuth token exchange (RFC 8693) of an upstream token for an Ably token."""

from __future__ import annotations

import json
import logging

from starlette.requests import Request
from starlette.responses import Response

from authserver.core.callers import Identity
from authserver.errors import (
    AuthServerError,
    BadRequestError,
    CapabilityError,
    ForbiddenError,
    NotAuthenticatedError,
    UnavailableError,
)
from authserver.http.common import (
    body_pairs,
    count_issued,
    metrics_of,
    services,
)
from authserver.http.params import parse_token_params
from authserver.http.responses import json_response
from authserver.infra.audit import audit_refused

log = logging.getLogger("authserver.http")


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
    retry = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return json_response({"error": exc.error, "error_description": exc.message}, exc.status, retry)


def _as_oauth_error(exc: AuthServerError) -> OAuthError:
    if isinstance(exc, OAuthError):
        return exc
    if isinstance(exc, CapabilityError) or exc.code == 40160:
        return OAuthError("invalid_scope", exc.message)
    if isinstance(exc, NotAuthenticatedError | ForbiddenError):
        return OAuthError("invalid_grant", exc.message)  # the subject token cannot be exchanged
    if isinstance(exc, UnavailableError):
        unavailable = OAuthError("temporarily_unavailable", exc.message, 503)
        unavailable.retry_after = exc.retry_after
        return unavailable
    if isinstance(exc, BadRequestError):
        return OAuthError("invalid_request", exc.message)
    return OAuthError("server_error", "internal error", 500)


async def _exchange_fields(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send the token exchange as an application/x-www-form-urlencoded form")
    fields: dict[str, str] = {}
    for name, value in await body_pairs(request):
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
    count_issued(request, identity, "token-exchange", issued.capability, issued.expires_ms - issued.issued_ms)
    details = json.loads(issued.details_json())
    body = {
        "access_token": issued.token,
        "issued_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_type": "Bearer",
        "expires_in": (issued.expires_ms - issued.issued_ms) // 1000,
        **details,
    }
    return json_response(body)
