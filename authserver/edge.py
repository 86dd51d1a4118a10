"""Middleware at the edge of the app: the request id and its latency, the Host check, and the
no-cache headers on every redirect and error (whoever produced it)."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logs import request_id
from .metrics import Metrics
from .responses import NO_CACHE, error_response

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_NO_CACHE_RAW = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in NO_CACHE.items()]


def accepted_request_id(value: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is short and safe to log, else a fresh one."""
    if value is not None and _REQUEST_ID.fullmatch(value):
        return value
    # NOTE: an id, not a secret: 128 random bits as uuid4().hex gave, without a urandom call per request.
    return f"{random.getrandbits(128):032x}"


class RequestMiddleware:
    """Gives each request an id (``X-Request-ID``, echoed back; in every log line while it runs),
    records its latency by route template, and adds the no-cache headers to every answer whose
    status is 300 or more (redirects and errors) that lacks them."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = next((v for n, v in scope.get("headers", []) if n == b"x-request-id"), None)
        rid = accepted_request_id(supplied.decode("latin-1") if supplied is not None else None)
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode("latin-1")))
                if status >= 300:
                    present = {name.lower() for name, _ in headers}
                    headers.extend((name, value) for name, value in _NO_CACHE_RAW if name not in present)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.request_observed(template, scope.get("method", ""), status, time.perf_counter() - started)
            request_id.reset(token)


def _split_host(value: str) -> tuple[str, str | None]:
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value.partition("]")
        return host + "]", rest[1:] if rest.startswith(":") else None
    host, colon, port = value.partition(":")
    return host, port if colon else None


def host_allowed(header: str, patterns: Sequence[str]) -> bool:
    """``header`` (a Host value) matches a pattern: ``host``, ``host:port``, ``*.domain`` or ``*``."""
    host, port = _split_host(header)
    if not host:
        return False
    for pattern in patterns:
        want_host, want_port = _split_host(pattern)
        if want_port is not None and want_port != port:
            continue
        if want_host == "*" or host == want_host or (want_host.startswith("*.") and host.endswith(want_host[1:])):
            return True
    return False


class AllowedHostsMiddleware:
    """Refuses (400, Ably-shaped, no-cache) a request whose Host is not in ``allowed_hosts``.

    ``exempt`` paths (the liveness and readiness probes, which orchestrators call by IP) are answered
    whatever the Host; they build nothing from it.
    """

    def __init__(
        self, app: ASGIApp, allowed_hosts: Sequence[str], exempt: Sequence[str] = ("/healthz", "/readyz")
    ) -> None:
        self.app = app
        self.allowed_hosts = tuple(allowed_hosts)
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for n, v in scope.get("headers", []) if n == b"host"), "")
        if not host_allowed(host, self.allowed_hosts):
            await error_response(40000, 400, "Host header is not one this service answers to")(scope, receive, send)
            return
        await self.app(scope, receive, send)
