"""``/healthz`` and ``/metrics``."""

from __future__ import annotations

import hmac
import logging
import os

from starlette.requests import Request
from starlette.responses import Response

from authserver.http.common import (
    metrics_of,
    services,
)
from authserver.http.responses import error_response, json_response

log = logging.getLogger("authserver.http")


async def metrics(request: Request) -> Response:
    """Prometheus text format, summed over every worker of this service; with AUTHSERVER_METRICS_TOKEN,
    only for ``Authorization: Bearer <token>`` (RFC 6750: a missing or wrong token is a 401)."""
    wanted = services(request).settings.metrics_token
    if wanted is not None:
        refused = _refused_scrape(request.headers.get("authorization"), wanted)
        if refused is not None:
            return refused
    body, media_type = metrics_of(request).render()
    return Response(body, media_type=media_type, headers={"Cache-Control": "no-store"})


async def healthz(request: Request) -> Response:
    """Liveness of this process (``pid``: which worker answered)."""
    svc = services(request)
    return json_response(
        {"status": "ok", "keyName": svc.issuer.key.name, "development": svc.settings.development, "pid": os.getpid()}
    )


def _refused_scrape(authorization: str | None, wanted: str) -> Response | None:
    """The 401 for a scrape without the metrics token (None: it has it). The token is compared in
    constant time and never logged."""
    scheme, _, presented = (authorization or "").strip().partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), wanted.encode()):
        return None
    challenge = 'Bearer realm="metrics"' if authorization is None else 'Bearer realm="metrics", error="invalid_token"'
    response = error_response(40100, 401, "GET /metrics wants Authorization: Bearer <AUTHSERVER_METRICS_TOKEN>")
    response.headers["WWW-Authenticate"] = challenge
    return response
