"""The app factory: ``create_app(settings)`` wires the service; nothing is built at import time.

``uvicorn authserver.app:create_app --factory`` works too (settings are then read from the
environment when the app is built).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from . import routes
from .config import Settings, load_settings
from .errors import AuthServerError, ConfigError
from .guards import Gate, Throttle
from .identity import Authenticator
from .identity.passwords import Passwords
from .identity.users import outside_policy_problem
from .middleware import CatchAllMiddleware, CorsMiddleware, SecurityHeadersMiddleware
from .provider_login import FLOW_SECONDS, STATE_COOKIE, provider_login_routes
from .responses import error_response, exception_response
from .services import build_services
from .web import security_middleware_args, web_routes

log = logging.getLogger("authserver")


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthServerError)
    if exc.status >= 500:
        log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc.message)
    return exception_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code * 100, exc.status_code, str(exc.detail))


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], float] = time.time,
    passwords: Passwords | None = None,
    authenticators: tuple[Authenticator, ...] = (),
    throttle: Throttle | None = None,
    login_gate: Gate | None = None,
) -> Starlette:
    """Build the token service.

    :param settings: validated settings; ``None`` reads them from the environment.
    :param clock: seconds since the epoch; tests pass a fake clock.
    :param passwords: the password hasher (tests pass cheaper argon2id parameters).
    :param authenticators: extra identity sources, tried before the session cookie.
    :param throttle: the failed-login throttle (default: in memory, limits from ``settings``).
    :param login_gate: bounds concurrent password checks (default: in memory, from ``settings``).
    :raises ConfigError: when the settings have no signing key.
    """
    if settings is None:
        settings = load_settings()
    if not settings.ably_keys:
        raise ConfigError(["ABLY_API_KEY: no key to sign with (authserver serve starts a sandbox key in development)"])
    services = build_services(
        settings,
        clock=clock,
        passwords=passwords,
        authenticators=authenticators,
        throttle=throttle,
        gate=login_gate,
    )

    app_routes: list[BaseRoute] = [
        Route("/auth", routes.auth, methods=["GET", "POST"]),
        Route("/token", routes.token, methods=["POST"]),
        Route("/login", routes.login, methods=["POST"]),
        Route("/logout", routes.logout, methods=["POST"]),
        Route("/session", routes.session, methods=["GET"]),
        Route("/healthz", routes.healthz, methods=["GET"]),
        *provider_login_routes(services),
        *web_routes(settings),
    ]
    flow_middleware: list[Middleware] = []
    if settings.oidc_client_id:
        # Authlib keeps the code flow's marker in Starlette's session: Lax, so the provider's redirect brings it.
        flow_middleware.append(
            Middleware(
                SessionMiddleware,
                secret_key=settings.session_secret,
                session_cookie=STATE_COOKIE,
                max_age=FLOW_SECONDS,
                same_site="lax",
                https_only=settings.cookie_secure == "true",
            )
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        outside = await services.users.outside_policy()
        if outside:
            log.warning("%s", outside_policy_problem(outside, settings.policy_source))
        prefetch = None
        if services.upstream is not None:
            prefetch = asyncio.get_running_loop().create_task(services.upstream.prefetch())
        yield
        if prefetch is not None:
            prefetch.cancel()
        if services.upstream is not None:
            await services.upstream.close()
        await services.storage.close()

    app = Starlette(
        routes=app_routes,
        middleware=[
            Middleware(CorsMiddleware, origins=settings.allowed_origins),
            Middleware(SecurityHeadersMiddleware, **security_middleware_args(settings)),
            Middleware(CatchAllMiddleware),
            *flow_middleware,
        ],
        exception_handlers={AuthServerError: _domain_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.services = services
    return app
