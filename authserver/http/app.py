"""The app factory: ``create_app(settings)`` wires the service; nothing is built at import time.

``uvicorn authserver.app:create_app --factory`` works too (settings are then read from the
environment when the app is built).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from authserver.config import Settings, load_settings
from authserver.errors import AuthServerError, ConfigError, StoreUnavailableError, UnavailableError
from authserver.http import auth, exchange, health, login
from authserver.http.admin import admin_routes, admin_state
from authserver.http.backchannel import backchannel_routes
from authserver.http.edge import Edge, direct
from authserver.http.forwarding import ForwardedMiddleware
from authserver.http.provider_login import FLOW_SECONDS, STATE_COOKIE, provider_login_routes
from authserver.http.readiness import Readiness
from authserver.http.responses import error_response, exception_response
from authserver.http.web import security_middleware_args, web_routes
from authserver.identity import Authenticator
from authserver.identity.passwords import Passwords
from authserver.infra.drops import report_drops_to, report_shed_to
from authserver.infra.guards import Gate, Throttle
from authserver.infra.logs import LogLimiter
from authserver.infra.metrics import Metrics, multiprocess_dir_from_environment
from authserver.wiring import Services, build_services

log = logging.getLogger("authserver")
#: What a client can provoke at will (a 503 from the login gate, a body cut short) is logged at
#: warning level at most, a few lines a minute.
_limited = LogLimiter(burst=5, interval=60.0)


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthServerError)
    if isinstance(exc, StoreUnavailableError):
        route = request.scope.get("route")
        request.app.state.metrics.store_error(getattr(route, "path", "other"))
    if isinstance(exc, UnavailableError):
        _limited.log(
            log, logging.WARNING, "unavailable", "503 on %s %s: %s", request.method, request.url.path, exc.message
        )
    elif exc.status >= 500:
        log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc.message)
    return exception_response(exc)


async def _client_gone(request: Request, exc: Exception) -> Response:
    _limited.log(
        log, logging.WARNING, "disconnect", "client disconnected mid-body on %s %s", request.method, request.url.path
    )
    return error_response(40000, 400, "request body cut short")  # nobody is listening; for completeness


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code * 100, exc.status_code, str(exc.detail))


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], float] = time.time,
    passwords: Passwords | None = None,
    authenticators: tuple[Authenticator, ...] = (),
    metrics: Metrics | None = None,
    throttle: Throttle | None = None,
    login_gate: Gate | None = None,
) -> Starlette:
    """Build the token service.

    :param settings: validated settings; ``None`` reads them from the environment.
    :param clock: seconds since the epoch; tests pass a fake clock.
    :param passwords: the password hasher (tests pass cheaper argon2id parameters).
    :param authenticators: extra identity sources, tried before the session cookie.
    :param metrics: where counts go; default: the multiprocess directory ``serve`` prepared
        (PROMETHEUS_MULTIPROC_DIR, inherited by workers), else this process only.
    :param throttle: the failed-login throttle (default: shared through Redis with ``REDIS_URL``,
        else in memory; limits from ``settings``).
    :param login_gate: bounds concurrent password checks (default: in memory, from ``settings``).
    :raises ConfigError: when the settings have no signing key.
    """
    if settings is None:
        settings = load_settings()
    if not settings.ably_keys:
        raise ConfigError(["ABLY_API_KEY: no key to sign with (authserver serve starts a sandbox key in development)"])
    metrics = metrics or Metrics(multiprocess_dir_from_environment())
    services = build_services(
        settings,
        clock=clock,
        metrics=metrics,
        passwords=passwords,
        authenticators=authenticators,
        throttle=throttle,
        gate=login_gate,
    )

    readiness = Readiness(services)
    auth_route = Route("/auth", auth.auth, methods=["GET", "POST"])
    app = Starlette(
        routes=_routes(services, readiness, auth_route),
        middleware=_middleware(settings, metrics, auth_route),
        exception_handlers={AuthServerError: _domain_error, HTTPException: _http_error, ClientDisconnect: _client_gone},
        lifespan=_lifespan(services, readiness),
    )
    app.router.redirect_slashes = False  # NOTE: its redirect would be built from the Host header
    app.state.services = services
    app.state.metrics = metrics
    app.state.admin_limits = admin_state(services)
    return app


def _routes(services: Services, readiness: Readiness, auth_route: Route) -> list[BaseRoute]:
    return [
        auth_route,
        Route("/token", exchange.token, methods=["POST"]),
        Route("/login", login.login, methods=["POST"]),
        Route("/logout", login.logout, methods=["POST"]),
        Route("/session", login.session, methods=["GET"]),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", readiness.endpoint, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
        *admin_routes(services.settings),
        *provider_login_routes(services),
        *backchannel_routes(services),
        *web_routes(services.settings),
    ]


def _middleware(settings: Settings, metrics: Metrics, auth_route: Route) -> list[Middleware]:
    layers: list[Middleware] = []
    if settings.trusted_proxies:  # without trusted proxies it would pass every request through unchanged
        layers.append(Middleware(ForwardedMiddleware, trusted_proxies=settings.trusted_proxies))
    layers.append(
        Middleware(
            Edge,
            metrics=metrics,
            allowed_hosts=settings.allowed_hosts,
            origins=settings.allowed_origins,
            # GET /auth (what every token renewal asks) skips the router and Starlette's exception
            # layers: the same endpoint, its domain errors answered by the same handler.
            direct={("GET", "/auth"): direct(auth_route, _domain_error)},
            **security_middleware_args(settings),
        )
    )
    if settings.oidc_client_id:
        # Authlib keeps the code flow's marker in Starlette's session: Lax, so the provider's redirect brings it.
        layers.append(
            Middleware(
                SessionMiddleware,
                secret_key=settings.session_secret,
                session_cookie=STATE_COOKIE,
                max_age=FLOW_SECONDS,
                same_site="lax",
                https_only=_flow_cookie_secure(settings),
            )
        )
    return layers


def _flow_cookie_secure(settings: Settings) -> bool:
    """The code flow's cookie is Secure when asked, or (``auto``) when browsers reach the service over
    HTTPS: the public URL (required with OIDC_CLIENT_ID) says so, whatever scheme a proxy forwards."""
    if settings.cookie_secure == "auto":
        return (settings.public_url or "").startswith("https://")
    return settings.cookie_secure == "true"


def _lifespan(services: Services, readiness: Readiness) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        report_drops_to(app.state.metrics.connection_dropped)  # in this (worker) process
        report_shed_to(app.state.metrics.request_shed)
        await services.start()
        watch = asyncio.get_running_loop().create_task(readiness.watch(), name="authserver readiness")
        try:
            yield
        finally:
            watch.cancel()
            await services.close()
            app.state.metrics.process_exited()

    return lifespan
