"""``/healthz`` and ``/metrics``."""

from __future__ import annotations

import logging
import os

from starlette.requests import Request
from starlette.responses import Response

from authserver.http.common import (
    metrics_of,
    services,
)
from authserver.http.responses import json_response

log = logging.getLogger("authserver.http")


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
