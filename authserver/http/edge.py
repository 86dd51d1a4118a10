"""The edge of the app, one pure-ASGI layer (:class:`Edge`) for every request: the request id and its
latency, the Host check, CORS, the security headers, the no-cache headers on every redirect and error
(whoever produced it), and the last-resort error boundary; and the hot routes answered without the
router's layers (:func:`direct`)."""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authserver.errors import AuthServerError
from authserver.http.middleware import security_headers, unexpected_error
from authserver.http.responses import NO_CACHE, error_response
from authserver.infra.logs import FirstSeen, request_id
from authserver.infra.metrics import Metrics

log = logging.getLogger("authserver.http")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_NO_CACHE_RAW = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in NO_CACHE.items()]


def accepted_request_id(value: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is short and safe to log, else a fresh one."""
    if value is not None and _REQUEST_ID.fullmatch(value):
        return value
    # NOTE: an id, not a secret: 128 random bits as uuid4().hex gave, without a urandom call per request.
    return f"{random.getrandbits(128):032x}"


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


#: The API endpoints a front-end on a trusted origin may call cross-origin.
CORS_PATHS = frozenset({"/auth", "/token", "/session", "/login", "/logout"})
_CORS_ALLOWED_HEADERS = b"Authorization, Content-Type, Accept"
_CORS_EXPOSED_HEADERS = b"X-Ably-Errorcode, X-Ably-Errormessage"
_VARY_ORIGIN = (b"vary", b"Origin")
_CORS_ALLOWED = [
    (b"access-control-allow-credentials", b"true"),
    (b"access-control-expose-headers", _CORS_EXPOSED_HEADERS),
]
#: The names of :func:`~authserver.http.middleware.security_headers` (a response that sets one keeps its own).
_SECURITY_NAMES = frozenset(name for name, _ in security_headers())
#: Paths answered whatever the Host (the liveness and readiness probes, which orchestrators call by
#: IP); they build nothing from it.
HOST_EXEMPT = frozenset({"/healthz", "/readyz"})


class Edge:
    """The one layer between the server and the app, with a single ``send`` wrapper that adds every
    header once (pre-encoded).

    - **Request id**: ``X-Request-ID`` (the caller's when short and safe, else a fresh one), echoed
      back and in every log line while the request runs; its latency is recorded by route template.
    - **Host** (``allowed_hosts``, when given): another Host gets an Ably-shaped 400, except on
      :data:`HOST_EXEMPT` paths.
    - **CORS** for :data:`CORS_PATHS`, for exactly the trusted front-end ``origins``: an allowed origin
      gets ``Access-Control-Allow-Origin: <origin>`` with credentials, a preflight (``OPTIONS`` with
      ``Access-Control-Request-Method``) is answered 204 here, allowing ``Authorization`` and
      ``Content-Type``; any other origin gets no CORS header at all, and its preflight an Ably-shaped
      403 naming the origin and ``AUTHSERVER_ALLOWED_ORIGINS`` (logged once per origin, see
      :func:`refused_preflight`). Every answer of these paths says ``Vary: Origin``.
    - **Security headers** (:func:`~authserver.http.middleware.security_headers`) on every answer, and the
      no-cache headers on every answer whose status is 300 or more; a header the app set is left alone.
    - **Errors**: an unexpected exception becomes an Ably-shaped 500 and only its type and route are
      logged (an exception message may quote request data).
    - **Hot routes**: ``direct`` maps a (method, path) to an endpoint called without the router (see
      :func:`direct`); every other request goes to ``app``.

    Admission control is not here but below, in the server's protocol
    (:mod:`authserver.server.guard`): a request shed there never reaches this layer.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        allowed_hosts: Sequence[str] = (),
        origins: Sequence[str] = (),
        connect_src: Sequence[str] = (),
        script_src: Sequence[str] = (),
        direct: Mapping[tuple[str, str], ASGIApp] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.allowed_hosts = tuple(allowed_hosts)
        self.origins = frozenset(o.rstrip("/").lower() for o in origins)
        self.security = security_headers(connect_src=connect_src, script_src=script_src)
        self.direct = dict(direct or {})
        #: The refused origins already logged (bounded).
        self.refused = FirstSeen()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._not_http(scope, receive, send)
            return
        path: str = scope["path"]
        supplied, host, origin, preflight = _scan(scope["headers"])
        rid = accepted_request_id(supplied.decode("latin-1") if supplied is not None else None)
        rid_header = (b"x-request-id", rid.encode("latin-1"))
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500
        begun = False
        cors = path in CORS_PATHS
        allowed = cors and origin is not None and origin.decode("latin-1").rstrip("/").lower() in self.origins
        security = self.security

        async def edge_send(message: Message) -> None:
            nonlocal status, begun
            if message["type"] == "http.response.start":
                status, begun = message["status"], True
                headers = _answer_headers(message, status, cors, origin if allowed else None, security, rid_header)
                message = {**message, "headers": headers}
            await send(message)

        try:
            if self.allowed_hosts and path not in HOST_EXEMPT:
                if not host_allowed(host.decode("latin-1") if host is not None else "", self.allowed_hosts):
                    await _wrong_host()(scope, receive, edge_send)
                    return
            method = scope["method"]
            if cors and preflight and method == "OPTIONS" and origin is not None:
                if not allowed:
                    await refused_preflight(origin, path, self)(scope, receive, edge_send)
                    return
                status = 204
                await send(_preflight(origin, rid_header))
                await send({"type": "http.response.body", "body": b""})
                return
            endpoint = self.direct.get((method, path)) if not scope.get("root_path") else None
            await (endpoint or self.app)(scope, receive, edge_send)
        except Exception as exc:
            await unexpected_error(exc, scope, receive, edge_send, started=begun)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.request_observed(template, scope.get("method", ""), status, time.perf_counter() - started)
            request_id.reset(token)

    async def _not_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket (or lifespan): only the Host check applies."""
        if scope["type"] == "websocket" and self.allowed_hosts and scope["path"] not in HOST_EXEMPT:
            host = next((v for n, v in scope["headers"] if n == b"host"), b"")
            if not host_allowed(host.decode("latin-1"), self.allowed_hosts):
                await _wrong_host()(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _scan(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes | None, bytes | None, bytes | None, bool]:
    """The request's first X-Request-Id, first Host, last Origin, and whether it is a CORS preflight."""
    supplied = host = origin = None
    preflight = False
    for name, value in headers:
        if name == b"x-request-id":
            if supplied is None:
                supplied = value
        elif name == b"host":
            if host is None:
                host = value
        elif name == b"origin":
            origin = value
        elif name == b"access-control-request-method":
            preflight = True
    return supplied, host, origin, preflight


def _answer_headers(
    message: Message,
    status: int,
    cors: bool,
    allowed_origin: bytes | None,
    security: Sequence[tuple[bytes, bytes]],
    rid_header: tuple[bytes, bytes],
) -> list[tuple[bytes, bytes]]:
    """The answer's headers plus the edge's: Vary and CORS (on CORS paths; ``allowed_origin`` when the
    origin is allowed), the security headers it lacks, no-cache on errors, and the request id."""
    headers: list[tuple[bytes, bytes]] = list(message.get("headers", ()))
    present = {name.lower() for name, _ in headers}
    if cors:
        if b"vary" in present:
            vary = [b"Origin"]
            for name, value in headers:
                if name.lower() == b"vary":
                    vary.extend(v.strip() for v in value.split(b",") if v.strip().lower() != b"origin")
            headers = [header for header in headers if header[0].lower() != b"vary"]
            headers.append((b"vary", b", ".join(vary)))
        else:
            headers.append(_VARY_ORIGIN)
        if allowed_origin is not None:
            headers.append((b"access-control-allow-origin", allowed_origin))
            headers.extend(_CORS_ALLOWED)
    if present.isdisjoint(_SECURITY_NAMES):
        headers.extend(security)
    else:
        headers.extend(header for header in security if header[0] not in present)
    if status >= 300:
        headers.extend(header for header in _NO_CACHE_RAW if header[0] not in present)
    headers.append(rid_header)
    return headers


def refused_preflight(origin: bytes, path: str, edge: Edge) -> Response:
    """A CORS preflight from an origin that is not trusted: a 403 that says which origin and which
    setting (the browser shows it in its network panel), logged the first time each origin is seen."""
    text = origin.decode("latin-1")[:100]
    where = "is not in AUTHSERVER_ALLOWED_ORIGINS" if edge.origins else "(AUTHSERVER_ALLOWED_ORIGINS is empty)"
    message = f"CORS refused: origin {text!r} {where}; add it there to call {path}"
    if edge.refused.first(text.rstrip("/").lower()):
        log.warning("%s (logged once per origin)", message)
    return error_response(40300, 403, message)


def _wrong_host() -> Response:
    return error_response(40000, 400, "Host header is not one this service answers to")


def _preflight(origin: bytes, rid_header: tuple[bytes, bytes]) -> Message:
    headers = [
        (b"access-control-allow-origin", origin),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
        (b"access-control-allow-headers", _CORS_ALLOWED_HEADERS),
        (b"access-control-max-age", b"600"),
        (b"vary", b"Origin"),
        (b"content-length", b"0"),
        rid_header,
    ]
    return {"type": "http.response.start", "status": 204, "headers": headers}


ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


def direct(route: Route, handler: ErrorHandler) -> ASGIApp:
    """``route``'s endpoint as an ASGI app of its own, for :class:`Edge` to call without the router
    and Starlette's exception layers: the same endpoint function, and an :class:`AuthServerError` it
    raises is answered by ``handler``, the function those layers would have called."""
    endpoint = route.endpoint

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = route
        scope["endpoint"] = endpoint
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except AuthServerError as exc:
            response = await handler(request, exc)
        await response(scope, receive, send)

    return app
