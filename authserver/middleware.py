"""Pure ASGI middleware for the whole app: security headers, and a last-resort error boundary."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .responses import error_response

log = logging.getLogger("authserver")


class CatchAllMiddleware:
    """Turns an unexpected exception into an Ably-shaped 500 and logs only its type and route.

    NOTE: Starlette's own error middleware re-raises so that the server logs the traceback, and an
    exception message may quote request data (a password, a token). This boundary sits inside it and
    does not re-raise.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.error("unexpected %s on %s %s", type(exc).__name__, scope.get("method"), scope.get("path"))
            if not started:
                await error_response(50000, 500, "internal error")(scope, receive, send)


class SecurityHeadersMiddleware:
    """Pure ASGI middleware adding a strict CSP and related headers to every HTTP response.

    ``connect_src`` and ``script_src`` are origins allowed in addition to ``'self'`` (see
    :func:`security_middleware_args`). A header the app already set is left alone.
    """

    def __init__(self, app: ASGIApp, *, connect_src: Sequence[str] = (), script_src: Sequence[str] = ()) -> None:
        self.app = app
        for origin in (*connect_src, *script_src):
            # NOTE: an origin is pasted into the policy; a space or ';' would smuggle in a directive.
            if not origin or any(c in origin for c in " ;,'\"\r\n"):
                raise ValueError(f"CSP source {origin!r} is not a plain origin")
        policy = "; ".join(
            [
                "default-src 'none'",
                " ".join(["script-src 'self'", *script_src]),
                "style-src 'self'",
                "img-src 'self' data:",
                " ".join(["connect-src 'self'", *connect_src]),
                "form-action 'self'",
                "base-uri 'none'",
                "frame-ancestors 'none'",
            ]
        )
        self.headers: list[tuple[bytes, bytes]] = [
            (b"content-security-policy", policy.encode("latin-1")),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in self.headers if name not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


#: The API endpoints a front-end on a trusted origin may call cross-origin.
CORS_PATHS = frozenset({"/auth", "/token", "/session", "/login", "/logout"})
_CORS_ALLOWED_HEADERS = b"Authorization, Content-Type, Accept"
_CORS_EXPOSED_HEADERS = b"X-Ably-Errorcode, X-Ably-Errormessage"


class CorsMiddleware:
    """CORS for :data:`CORS_PATHS`, for exactly the trusted front-end origins (AUTHSERVER_ALLOWED_ORIGINS).

    An allowed origin gets ``Access-Control-Allow-Origin: <origin>`` with credentials, a preflight
    (``OPTIONS`` with ``Access-Control-Request-Method``) is answered 204 here, allowing ``Authorization``
    and ``Content-Type``; any other origin gets no CORS header at all (its preflight falls through to
    the app: 405). Every answer of these paths says ``Vary: Origin``.
    """

    def __init__(self, app: ASGIApp, *, origins: Sequence[str] = ()) -> None:
        self.app = app
        self.origins = frozenset(o.rstrip("/").lower() for o in origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in CORS_PATHS:
            await self.app(scope, receive, send)
            return
        origin: bytes | None = None
        preflight = False
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight = True
        allowed = origin is not None and origin.decode("latin-1").rstrip("/").lower() in self.origins
        if allowed and preflight and scope["method"] == "OPTIONS":
            assert origin is not None
            headers = [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-credentials", b"true"),
                (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                (b"access-control-allow-headers", _CORS_ALLOWED_HEADERS),
                (b"access-control-max-age", b"600"),
                (b"vary", b"Origin"),
                (b"content-length", b"0"),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[tuple[bytes, bytes]] = []
                vary = [b"Origin"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"vary":
                        vary.extend(v.strip() for v in value.split(b",") if v.strip().lower() != b"origin")
                    else:
                        headers.append((name, value))
                headers.append((b"vary", b", ".join(vary)))
                if allowed:
                    assert origin is not None
                    headers.append((b"access-control-allow-origin", origin))
                    headers.append((b"access-control-allow-credentials", b"true"))
                    headers.append((b"access-control-expose-headers", _CORS_EXPOSED_HEADERS))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cors)
