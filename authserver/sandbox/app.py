"""``create_sandbox_app``: the Starlette app that wires the sandbox's realtime and REST endpoints."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from authserver.core.capabilities import Capability
from authserver.core.keys import AblyKey
from authserver.errors import AuthServerError, ConfigError
from authserver.http.middleware import CatchAllMiddleware
from authserver.http.responses import error_headers
from authserver.sandbox import rest
from authserver.sandbox.hub import Sandbox
from authserver.sandbox.limits import SandboxLimits
from authserver.sandbox.protocol import error_info
from authserver.sandbox.realtime import realtime_endpoint

log = logging.getLogger("authserver.sandbox")

EXPOSED_HEADERS = ["Link", "X-Ably-Errorcode", "X-Ably-Errormessage", "X-Ably-Serverid"]


def ably_error_response(request: Request, error: AuthServerError) -> Response:
    """An Ably error body ``{"error": ErrorInfo}`` with ``X-Ably-Errorcode``/``X-Ably-Errormessage``."""
    headers = error_headers(error.code, error.message)
    return rest.respond(request, {"error": error_info(error)}, status=error.status, headers=headers)


async def _on_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, AuthServerError):
        return ably_error_response(request, exc)
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        # Ably answers an unknown method on a known path as it answers an unknown path (ably-spec 8.5).
        return ably_error_response(request, AuthServerError("Not found", code=40400, status=404))
    return ably_error_response(
        request, AuthServerError(str(exc.detail), code=exc.status_code * 100, status=exc.status_code)
    )


async def _channel_messages(request: Request) -> Response:
    if request.method == "POST":
        return await rest.publish(request)
    return await rest.history(request)


def _routes() -> list[BaseRoute]:
    return [
        Route("/time", rest.get_time, methods=["GET"]),
        Route("/keys/{key_name}/requestToken", rest.request_token, methods=["POST"]),
        Route("/keys/{key_name}/revokeTokens", rest.revoke_tokens, methods=["POST"]),
        Route("/channels/{channel:path}/messages", _channel_messages, methods=["GET", "POST"]),
        Route("/channels/{channel:path}/presence/history", rest.presence_history, methods=["GET"]),
        Route("/channels/{channel:path}/presence", rest.presence, methods=["GET"]),
        Route("/stats", rest.stats, methods=["GET"]),
        WebSocketRoute("/{path:path}", realtime_endpoint),
    ]


def _middleware() -> list[Middleware]:
    return [
        Middleware(
            CORSMiddleware,
            allow_origin_regex=".*",
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        ),
        # NOTE: a pure-ASGI boundary inside CORS (so a 500 still carries CORS headers): it logs only the
        # exception type and route, once, and does not re-raise as Starlette's own error handling does.
        Middleware(CatchAllMiddleware),
    ]


def create_sandbox_app(
    keys: Sequence[AblyKey],
    *,
    clock: Callable[[], float] = time.time,
    limits: SandboxLimits | None = None,
    key_capabilities: Mapping[str, Capability] | None = None,
    non_revocable_keys: Sequence[str] = (),
) -> Starlette:
    """A local Ably stand-in that accepts tokens for ``keys`` (see :mod:`authserver.sandbox`).

    Parameters:
        keys: the API keys whose JWTs (``kid``) and basic auth the sandbox accepts.
        clock: seconds since the epoch; token judgement and every timestamp use it.
        limits: bounds and timings (defaults: :class:`SandboxLimits`).
        key_capabilities: key name -> that key's capability; keys not listed are unrestricted.
        non_revocable_keys: key names without revocable tokens (revokeTokens answers 40121, no 1 h limit).

    :raises ConfigError: no keys, or capabilities named for unknown keys.
    """
    if not keys:
        raise ConfigError(["the sandbox needs at least one API key"])
    sandbox = Sandbox(
        keys,
        clock=clock,
        limits=limits or SandboxLimits(),
        key_capabilities=key_capabilities,
        non_revocable_keys=non_revocable_keys,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info("sandbox ready for keys %s", ", ".join(k.name for k in keys))
        yield
        for connection in sandbox.connections:
            connection.cancel_timers()

    app = Starlette(
        routes=_routes(),
        middleware=_middleware(),
        exception_handlers={AuthServerError: _on_error, HTTPException: _on_error},
        lifespan=lifespan,
    )
    app.state.sandbox = sandbox
    return app
