"""The login page: static files from ``web/``, the client options it needs, and the CSP origins it needs.

Routes (see :func:`web_routes`)::

    GET /                     web/index.html
    GET /static/<file>        files inside web/ only (no listing, no way out of the directory)
    GET /client-config        where ably-js comes from and how it reaches Ably (real Ably or a sandbox)
    GET /vendor/ably.min.js   the npm copy of ably-js, only when ABLY_JS=local

:func:`security_middleware_args` derives the origins that the service's edge layer
(:class:`~authserver.http.edge.Edge`, or :class:`~authserver.http.middleware.SecurityHeadersMiddleware` alone)
adds to its Content Security Policy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, TypedDict
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from authserver.http.responses import NO_CACHE

#: The directory whose files the page is made of. Nothing else of the repository is served.
_PACKAGED_WEB = Path(__file__).resolve().parents[1] / "_web"
#: The login page: the copy a wheel carries, else ``web/`` of the checkout (an editable install).
#: NOTE: the packaged copy first: beside an installed package, ``../web`` is site-packages' own
#: folder of that name (another distribution's), never to be served.
WEB_DIR = _PACKAGED_WEB if _PACKAGED_WEB.is_dir() else Path(__file__).resolve().parents[2] / "web"

#: ably-js pinned for production, from Ably's CDN (URL form ``https://cdn.ably.com/lib/ably.min-<version>.js``).
ABLY_JS_VERSION = "2.28.0"
ABLY_CDN_ORIGIN = "https://cdn.ably.com"
ABLY_JS_CDN_URL = f"{ABLY_CDN_ORIGIN}/lib/ably.min-{ABLY_JS_VERSION}.js"
# NOTE: computed from ``build/ably.min.js`` of the npm package ably@2.28.0
# (openssl dgst -sha384 -binary build/ably.min.js | openssl base64 -A). It assumes the CDN serves the
# very same bytes as the npm build; if it does not, the browser refuses the script (fail closed) and the
# page says ably-js could not be loaded. tests/http/test_web.py re-checks it against the local npm copy.
ABLY_JS_CDN_INTEGRITY = "sha384-SQa/bifsOXACnC9lqGmIdevHOESao90qevm3OLDnCJg1NAuq7Yccvt6H4JT1VIfc"

LOCAL_ABLY_JS_URL = "/vendor/ably.min.js"
AUTH_URL = "/auth"

#: Where real Ably lives for a browser: primary and fallback hosts, REST and WebSocket, plus the
#: connectivity checks (internet-up / ws-up.ably-realtime.com).
REAL_ABLY_CONNECT_SRC = (
    "https://*.ably.net",
    "wss://*.ably.net",
    "https://*.ably-realtime.com",
    "wss://*.ably-realtime.com",
)

_NO_CACHE = {"Cache-Control": "no-cache"}


class WebSettings(Protocol):
    """The part of :class:`authserver.config.Settings` the login page reads."""

    @property
    def ably_endpoint(self) -> str | None: ...  # None: real Ably; else http(s)://host[:port] of a sandbox

    @property
    def ably_js(self) -> str: ...  # "cdn" or "local"

    @property
    def ably_js_path(self) -> Path: ...  # directory of the npm-installed ``ably`` package

    @property
    def demo_login(self) -> bool: ...  # any free name and password logs in (the page shows a hint)

    @property
    def provider_login(self) -> str | None: ...  # the provider's name for "Log in with <provider>", or None


class AblyJsSource(TypedDict):
    src: str
    integrity: str | None


class ClientConfig(TypedDict):
    authUrl: str
    clientOptions: dict[str, Any]
    ablyJs: AblyJsSource
    target: str
    demoLogin: bool
    providerLogin: ProviderLogin | None


class ProviderLogin(TypedDict):
    name: str
    url: str


class SecurityArgs(TypedDict):
    connect_src: tuple[str, ...]
    script_src: tuple[str, ...]


def _endpoint_parts(endpoint: str) -> tuple[bool, str, int]:
    """``http(s)://host[:port]`` -> (tls, host, port). :raises ValueError: for anything else."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"ably_endpoint {endpoint!r} is not an http(s)://host[:port] URL")
    tls = parts.scheme == "https"
    return tls, parts.hostname, parts.port or (443 if tls else 80)


def client_config(settings: WebSettings) -> ClientConfig:
    """What the page needs to create its ``Ably.Realtime`` client (everything but the token)."""
    options: dict[str, Any] = {}
    target = "Ably"
    if settings.ably_endpoint is not None:
        tls, host, port = _endpoint_parts(settings.ably_endpoint)
        # ably-js uses an endpoint containing a dot (or "localhost") verbatim as the host and then
        # tries no fallback hosts. WebSocket only and no connectivity check: a sandbox implements
        # neither comet (xhr_polling) nor Ably's internet-up/ws-up probes (spec 6.2, pitfall 14).
        options = {"endpoint": host, "tls": tls, "transports": ["web_socket"], "disableConnectivityCheck": True}
        options["tlsPort" if tls else "port"] = port
        target = f"sandbox at {host}:{port}"
    source: AblyJsSource
    if settings.ably_js == "local":
        source = {"src": LOCAL_ABLY_JS_URL, "integrity": None}
    else:
        source = {"src": ABLY_JS_CDN_URL, "integrity": ABLY_JS_CDN_INTEGRITY}
    return {
        "authUrl": AUTH_URL,
        "clientOptions": options,
        "ablyJs": source,
        "target": target,
        "demoLogin": settings.demo_login,
        "providerLogin": (
            None if settings.provider_login is None else {"name": settings.provider_login, "url": "/login/oidc"}
        ),
    }


def security_middleware_args(settings: WebSettings) -> SecurityArgs:
    """The extra CSP origins for these settings: ``Middleware(SecurityHeadersMiddleware, **args)``."""
    connect_src: tuple[str, ...]
    if settings.ably_endpoint is None:
        connect_src = REAL_ABLY_CONNECT_SRC
    else:
        tls, host, port = _endpoint_parts(settings.ably_endpoint)
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        connect_src = (f"https://{netloc}", f"wss://{netloc}") if tls else (f"http://{netloc}", f"ws://{netloc}")
    # NOTE: the exact pinned script, not the whole CDN origin.
    script_src = () if settings.ably_js == "local" else (ABLY_JS_CDN_URL,)
    return {"connect_src": connect_src, "script_src": script_src}


def web_routes(settings: WebSettings, *, web_dir: Path = WEB_DIR) -> list[BaseRoute]:
    """Routes of the login page for ``settings``.

    :raises ValueError: if ``settings.ably_endpoint`` is not an ``http(s)://host[:port]`` URL.
    :raises RuntimeError: if ``web_dir`` does not exist.
    """
    config = client_config(settings)  # parse the endpoint now: fail at start-up, not per request
    index = web_dir / "index.html"

    async def homepage(request: Request) -> Response:
        return FileResponse(index, media_type="text/html; charset=utf-8", headers=_NO_CACHE)

    async def get_client_config(request: Request) -> Response:
        return JSONResponse(config, headers=NO_CACHE)

    routes: list[BaseRoute] = [
        Route("/", homepage, methods=["GET"]),
        Route("/client-config", get_client_config, methods=["GET"]),
        # html=False: a directory is a 404, never a listing. StaticFiles resolves the real path and
        # refuses anything outside web_dir (../, %2e%2e, symlinks out of the directory).
        Mount("/static", app=StaticFiles(directory=web_dir, html=False), name="static"),
    ]
    if settings.ably_js == "local":
        package_dir = settings.ably_js_path

        async def vendor_ably(request: Request) -> Response:
            problem = _local_ably_js_problem(package_dir)
            if problem is not None:
                return PlainTextResponse(problem, status_code=404, headers=NO_CACHE)
            return FileResponse(
                package_dir / "build" / "ably.min.js", media_type="text/javascript; charset=utf-8", headers=_NO_CACHE
            )

        routes.append(Route(LOCAL_ABLY_JS_URL, vendor_ably, methods=["GET"]))
    return routes


def _local_ably_js_problem(package_dir: Path) -> str | None:
    """Why the npm copy of ably-js cannot be served, or None if it can."""
    install = "install it with scripts/setup (the locked ably-js from npm), or set ABLY_JS=cdn"
    if not (package_dir / "build" / "ably.min.js").is_file():
        return f"ably-js is not installed (ABLY_JS=local, ABLY_JS_PATH has no build/ably.min.js); {install}\n"
    try:
        version = str(json.loads((package_dir / "package.json").read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"ably-js under ABLY_JS_PATH has no readable package.json version; {install}\n"
    if not version.startswith("2."):
        return f"ably-js {version} under ABLY_JS_PATH is not version 2.x; {install}\n"
    return None
