"""``POST /oidc/backchannel-logout``: OpenID Connect Back-Channel Logout 1.0, the relying party's end.

A trusted provider whose ``backchannel_logout_audience`` is configured posts a ``logout_token`` here
(``application/x-www-form-urlencoded``) when its user logs out there or an administrator ends the
session. A valid one is carried out (:class:`~authserver.identity.oidc.backchannel.UpstreamLogouts`):
200, with ``Cache-Control: no-store`` (section 2.8). Anything else is 400 with the OAuth error body
``{"error": "invalid_request", "error_description": ...}`` and nothing is logged out; the database or
the provider's keys unreachable is 503 ``temporarily_unavailable`` (nothing is logged out, the provider
may send the same token again). Every token received is audited, without its contents, even one
that fails on a bug (500).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from authserver.errors import AuthServerError, BadRequestError, UnavailableError
from authserver.http.bodies import read_bounded
from authserver.http.common import metrics_of
from authserver.http.responses import json_response
from authserver.infra.audit import audit_logout_accepted, audit_logout_refused
from authserver.wiring import Services

log = logging.getLogger("authserver.http")
BACKCHANNEL_PATH = "/oidc/backchannel-logout"
#: A logout token is a few hundred bytes; the body is refused beyond this.
MAX_BODY_BYTES = 32 * 1024
#: Section 2.8: "The response SHOULD include Cache-Control: no-store" (and Pragma for HTTP/1.0 caches).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _answer(status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Response:
    if body is None:
        return Response(status_code=status, headers=NO_STORE)
    return json_response(body, status, {**NO_STORE, **(headers or {})})


def _refusal(description: str) -> BadRequestError:
    return BadRequestError(f"logout token refused: {description}")


async def _logout_token(request: Request) -> str:
    """The one ``logout_token`` of a form-encoded body.

    :raises BadRequestError: another content type, a body too large, no or several tokens.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise _refusal("the body must be application/x-www-form-urlencoded")
    body = await read_bounded(request, MAX_BODY_BYTES, lambda: _refusal(f"body over {MAX_BODY_BYTES} bytes"))
    try:
        fields = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise _refusal("the body is not a form") from None
    tokens = fields.get("logout_token", [])
    if len(tokens) != 1 or not tokens[0]:
        raise _refusal("the body must have exactly one logout_token")
    return tokens[0]


def backchannel_routes(svc: Services) -> list[BaseRoute]:
    """The endpoint, when a trusted issuer has back-channel logout on (``backchannel_logout_audience``)."""
    verifier, logouts = svc.upstream, svc.logouts
    if verifier is None or logouts is None:
        return []

    async def backchannel_logout(request: Request) -> Response:
        now = svc.clock()
        try:
            token = await _logout_token(request)
            claims, upstream = await verifier.logout_claims(token, now)
            ended = await logouts.apply(claims, upstream, now)
        except BadRequestError as exc:
            metrics_of(request).backchannel_logout("refused")
            audit_logout_refused(400, exc.message)
            return _answer(400, {"error": "invalid_request", "error_description": exc.message})
        except UnavailableError as exc:
            metrics_of(request).backchannel_logout("unavailable")
            audit_logout_refused(503, exc.message)
            retry = {"Retry-After": str(exc.retry_after or 5)}
            return _answer(503, {"error": "temporarily_unavailable", "error_description": exc.message}, retry)
        except AuthServerError as exc:  # another refusal, which the app answers as it answers it elsewhere
            metrics_of(request).backchannel_logout("refused")
            audit_logout_refused(exc.status, exc.message)
            raise
        except Exception:  # a bug no check named: still audited, then the server's 500
            metrics_of(request).backchannel_logout("failed")
            audit_logout_refused(500, "internal error")
            raise
        metrics_of(request).backchannel_logout("accepted")
        audit_logout_accepted(upstream.issuer, "sid" if claims.sid is not None else "sub", ended)
        return _answer(200)

    return [Route(BACKCHANNEL_PATH, backchannel_logout, methods=["POST"], name="backchannel_logout")]
