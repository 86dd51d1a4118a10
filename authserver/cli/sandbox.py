"""``authserver sandbox``: the local Ably-compatible sandbox alone."""

from __future__ import annotations

import argparse

from authserver.cli.common import EXIT_OK, log
from authserver.config import Settings
from authserver.core.capabilities import Capability
from authserver.errors import ConfigError
from authserver.server.serving import bind, run_servers, url_host, uvicorn_server


def run_sandbox(settings: Settings, host: str | None, port: int | None) -> int:
    from authserver.sandbox import create_sandbox_app

    if not settings.ably_keys:
        raise ConfigError(["ABLY_API_KEY: the sandbox needs the key(s) it should accept"])
    host = host or settings.host
    sock = bind(
        host,
        settings.sandbox_port if port is None else port,
        server="the Ably sandbox",
        moved_by="--port or AUTHSERVER_SANDBOX_PORT",
    )
    app = create_sandbox_app(settings.ably_keys, key_capabilities=_key_capabilities(settings))
    log.info(
        "Ably sandbox on http://%s:%d for key(s) %s",
        url_host(host),
        sock.getsockname()[1],
        ", ".join(k.name for k in settings.ably_keys),
    )
    run_servers([(uvicorn_server(app, settings.log_level), [sock])])
    return EXIT_OK


def _key_capabilities(settings: Settings) -> dict[str, Capability] | None:
    if settings.key_capability is None:
        return None
    return {key.name: settings.key_capability for key in settings.ably_keys}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sandbox = sub.add_parser("sandbox", help="run the local Ably-compatible sandbox alone")
    sandbox.add_argument("--host", help="interface (default AUTHSERVER_HOST or 127.0.0.1)")
    sandbox.add_argument("--port", type=int, help="port (default AUTHSERVER_SANDBOX_PORT or 8001)")
