"""Pure ASGI middleware: security headers, and a last-resort error boundary (the sandbox uses these
layers; the token service has them fused into :class:`authserver.http.edge.Edge`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authserver.http.responses import error_response

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
            await unexpected_error(exc, scope, receive, send, started=started)


async def unexpected_error(exc: Exception, scope: Scope, receive: Receive, send: Send, *, started: bool) -> None:
    """The last-resort answer: log the exception's type and route only, answer an Ably-shaped 500 if
    the response has not started."""
    log.error("unexpected %s on %s %s", type(exc).__name__, scope.get("method"), scope.get("path"))
    if not started:
        await error_response(50000, 500, "internal error")(scope, receive, send)


def security_headers(*, connect_src: Sequence[str] = (), script_src: Sequence[str] = ()) -> list[tuple[bytes, bytes]]:
    """The strict CSP and related headers, encoded once; ``connect_src`` and ``script_src`` are origins
    allowed in addition to ``'self'`` (see :func:`~authserver.http.web.security_middleware_args`).

    :raises ValueError: an origin that is not a plain origin.
    """
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
    return [
        (b"content-security-policy", policy.encode("latin-1")),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
    ]


class SecurityHeadersMiddleware:
    """Pure ASGI middleware adding a strict CSP and related headers to every HTTP response.

    ``connect_src`` and ``script_src`` are origins allowed in addition to ``'self'`` (see
    :func:`security_middleware_args`). A header the app already set is left alone.
    """

    def __init__(self, app: ASGIApp, *, connect_src: Sequence[str] = (), script_src: Sequence[str] = ()) -> None:
        self.app = app
        self.headers = security_headers(connect_src=connect_src, script_src=script_src)

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
