"""``authserver serve``: the token service (and, in development, its embedded Ably sandbox)."""

from __future__ import annotations

import argparse
import socket
from typing import TYPE_CHECKING

from authserver import __version__
from authserver.cli.common import EXIT_OK, ably_js_note, check_database, connection_limits, log
from authserver.cli.devkey import development_key, development_session_secret, development_session_secret_path
from authserver.config import Settings, open_metrics_warning, short_ttl_warnings
from authserver.errors import ConfigError, UserError
from authserver.server.serving import acceptors, bind, run_servers, url_host, uvicorn_server

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

    from authserver.server.guard import ConnectionLimits


def run_serve(settings: Settings, host: str | None, port: int | None, workers: int | None = None) -> int:
    for misspelled in settings.misspelled:
        log.warning("%s", misspelled)
    host = host or settings.host
    if port is not None:
        settings = settings.with_port(port)  # the embedded sandbox follows to port + 1
    port = settings.port
    workers = settings.workers if workers is None else workers
    if workers < 1:
        raise UserError("--workers must be at least 1")
    if workers > 1 and settings.development:
        log.warning(
            "development mode (embedded sandbox) runs one worker: --workers/AUTHSERVER_WORKERS=%d ignored;"
            " set ABLY_API_KEY (and REDIS_URL) to run several",
            workers,
        )
        workers = 1
    log.info("database: %s", check_database(settings))  # refuse to start on a database that cannot serve
    _start_warnings(settings, host)
    if workers > 1:
        return _serve_workers(settings, host, port, workers)
    if settings.development and port and settings.sandbox_port == port:
        raise ConfigError([f"AUTHSERVER_SANDBOX_PORT: {port} is the token service's port too; choose another"])
    # The service's own port first: when both are busy (another serve runs), that is the one to name.
    sock = bind(host, port, server="the token service", moved_by="--port or AUTHSERVER_PORT")
    servers: list[tuple[uvicorn.Server, list[socket.socket]]] = []
    try:
        if settings.development:
            settings = _embedded_sandbox(settings, host, servers)
        app = _service_app(settings)
    except BaseException:
        for bound in [sock, *(s for _, socks in servers for s in socks)]:
            bound.close()  # nothing will serve on these now
        raise
    limits = connection_limits(settings)
    servers.insert(0, (uvicorn_server(app, settings.log_level, limits), acceptors(sock)))
    _announce(settings, host, sock, limits, workers=1)
    run_servers(servers)
    return EXIT_OK


def _start_warnings(settings: Settings, host: str) -> None:
    """What serve says before it binds: demo login, where the page's ably-js comes from, short tokens, open metrics."""
    if settings.demo_login:
        log.warning("DEMO LOGIN IS ON: any username and password logs in. NOT FOR PRODUCTION.")
    level, note = ably_js_note(settings)
    log.log(level, "ably-js for the page: %s", note)
    for warning in [*short_ttl_warnings(settings), open_metrics_warning(settings, host)]:
        if warning is not None:
            log.warning("%s", warning)


def _service_app(settings: Settings) -> Starlette:
    """The app, once the ports are ours."""
    from authserver.http.app import create_app
    from authserver.infra.metrics import Metrics, prepare_multiprocess_dir

    if settings.session_secret_ephemeral:
        log.warning("no SESSION_SECRET: an ephemeral one is used; sessions end when the service stops")
    # Once the ports are ours: prometheus-client's multiprocess mode is process-wide.
    metrics = Metrics(multiprocess_dir=prepare_multiprocess_dir())
    return create_app(settings, metrics=metrics)  # accounts outside the policy: warned at start-up


def _embedded_sandbox(
    settings: Settings, host: str, servers: list[tuple[uvicorn.Server, list[socket.socket]]]
) -> Settings:
    """Development mode: bind the embedded Ably sandbox (with the development key) beside the service;
    add it to ``servers`` and return the settings that point the service at it."""
    from authserver.sandbox import create_sandbox_app

    key, key_file = development_key(settings.database_path)
    sandbox_sock = bind(
        host,
        settings.sandbox_port,
        server="the embedded Ably sandbox",
        moved_by="AUTHSERVER_SANDBOX_PORT (default: the service's port + 1)",
    )
    endpoint = f"http://{url_host(host)}:{sandbox_sock.getsockname()[1]}"
    # SESSION_SECRET wins; else the development one, kept beside the key (None: an in-memory database).
    secret = development_session_secret(settings.database_path) if settings.session_secret_ephemeral else None
    settings = settings.with_sandbox(key, endpoint, secret)
    servers.append((uvicorn_server(create_sandbox_app((key,)), settings.log_level), [sandbox_sock]))
    log.warning("DEVELOPMENT MODE: no ABLY_API_KEY; embedded Ably sandbox on %s with key %s", endpoint, key.name)
    if key_file is not None:
        log.info(
            "development key kept in %s: `authserver token --user NAME` mints tokens this sandbox accepts", key_file
        )
    if secret is not None:
        log.info(
            "development session secret kept in %s: sessions survive a restart",
            development_session_secret_path(settings.database_path),
        )
    return settings


def _announce(settings: Settings, host: str, sock: socket.socket, limits: ConnectionLimits, *, workers: int) -> None:
    """The start-up lines of ``serve``: where it listens, with which key and connection limits."""
    log.info(
        "authserver %s on http://%s:%d (signing key %s, Ably: %s)%s",
        __version__,
        url_host(host),
        sock.getsockname()[1],
        settings.ably_keys[0].name,
        settings.ably_endpoint or "real Ably",
        f" with {workers} workers" if workers > 1 else "",
    )
    log.info(
        "connection limits: %d open connections, headers within %gs and %d bytes, bodies within %gs",
        limits.connection_cap(),
        limits.header_timeout,
        limits.max_header_bytes,
        limits.body_timeout,
    )


def _serve_workers(settings: Settings, host: str, port: int, workers: int) -> int:
    from authserver.server.workers import run_workers

    if settings.redis_url is None:
        log.warning(
            "%d workers without REDIS_URL: each keeps its own login throttle and session memory"
            " (a logout reaches the others only within a second); set REDIS_URL to share them",
            workers,
        )
    if settings.session_secret_ephemeral:
        raise ConfigError(["SESSION_SECRET: several workers need one shared secret (set SESSION_SECRET)"])
    from authserver.infra.metrics import prepare_multiprocess_dir

    limits = connection_limits(settings)
    sock = bind(host, port, server="the token service", moved_by="--port or AUTHSERVER_PORT")
    # Once the port is ours: the workers (spawned after this) inherit the metrics directory.
    prepare_multiprocess_dir()
    _announce(settings, host, sock, limits, workers=workers)
    try:
        run_workers(settings, sock, workers, limits)
    finally:
        sock.close()
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the token service (with --dev and no ABLY_API_KEY: and a sandbox)")
    serve.add_argument(
        "--dev",
        action="store_true",
        help="development mode when no ABLY_API_KEY is set (embedded sandbox, demo login): AUTHSERVER_ENV=development",
    )
    serve.add_argument("--host", help="interface (default AUTHSERVER_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default AUTHSERVER_PORT or 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (default AUTHSERVER_WORKERS or 1)")
