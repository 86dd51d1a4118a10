"""Running ASGI apps under uvicorn, on sockets bound first (so port 0 works and the real port can be
announced), several servers in one event loop (the service beside its development sandbox)."""

from __future__ import annotations

import asyncio
import errno
import gc
import socket
from collections.abc import Sequence
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from authserver.errors import ListenError
from authserver.server.guard import ConnectionLimits, limit_connections

#: Seconds a shutting-down server waits for its in-flight requests.
GRACEFUL_SHUTDOWN = 30
#: Listening descriptors the token service's socket is served through (see :func:`acceptors`).
ACCEPTORS = 32


def bind(host: str, port: int, *, server: str = "the token service", moved_by: str = "--port") -> socket.socket:
    """A listening-ready socket on ``host:port`` (0: any free port) for ``server``.

    :param moved_by: the setting or option that chooses this port, named in the error.
    :raises ListenError: the address cannot be used (in use, not ours, no permission), naming which
        server it was for and how to move it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        where = f"{url_host(host)}:{port}"
        busy = " (is another authserver running there?)" if exc.errno == errno.EADDRINUSE else ""
        raise ListenError(
            f"cannot listen on {where} for {server}: {exc.strerror}{busy}; another port: {moved_by}"
        ) from None
    sock.set_inheritable(True)
    return sock


def acceptors(sock: socket.socket, count: int = ACCEPTORS) -> list[socket.socket]:
    """``sock`` and ``count - 1`` duplicates of it, each to be served as a listener of its own.

    uvloop (libuv 1.52) accepts ONE connection per listener per turn of the event loop, and under
    load a turn lasts tens of milliseconds (every ready connection is read in it): new connections
    then wait in the kernel's accept queue, drained at a few dozen per second (measured with
    ``bench/openloop.py``: the accept queue full, 2,049 connections, for whole 20 s steps, while
    admission control never saw their requests to answer them 503). Each duplicate descriptor is a watcher of
    its own in the loop, so a turn accepts up to ``count``. What it costs: one new connection on an
    idle server wakes every watcher and all but one find nothing (``accept4``: EAGAIN, about a
    microsecond each).
    """
    # Not inheritable: serve --workers hands them to its worker processes explicitly (spawn), and no
    # other child process may keep the port's accept queue alive.
    return [sock, *(sock.dup() for _ in range(count - 1))]


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def uvicorn_config(
    app: ASGIApp | str, log_level: str, limits: ConnectionLimits | None = None, **options: Any
) -> uvicorn.Config:
    """The uvicorn settings every server of the service shares (``app`` may be an import string, with
    ``factory=True`` and ``workers=N`` in ``options``); ``limits``: those of :mod:`authserver.server.guard`."""
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,  # NOTE: an access log line would carry sandbox tokens in query strings
        log_config=None,
        # NOTE: X-Forwarded-* are applied by authserver.forwarding, from AUTHSERVER_TRUSTED_PROXIES
        # only; uvicorn's own handling trusts 127.0.0.1 by default.
        proxy_headers=False,
        server_header=False,
        ws_max_size=1 << 20,
        # Clients renewing short-lived tokens reuse pooled connections; uvicorn's 5 s default
        # closes them just as a renewal goes out and the renewal fails (80019).
        timeout_keep_alive=75,
        # SIGTERM: stop accepting, let in-flight requests finish, but not for ever.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
        **options,
    )
    if limits is not None:
        limit_connections(config, limits)
    return config


def uvicorn_server(app: ASGIApp, log_level: str, limits: ConnectionLimits | None = None) -> uvicorn.Server:
    """uvicorn for ``app``; ``limits``: the connection limits of :mod:`authserver.server.guard`."""
    return uvicorn.Server(uvicorn_config(app, log_level, limits))


def settle_heap() -> None:
    """Once the app is built: what start-up made lives as long as the process, so it is moved out of
    the garbage collector's way (``gc.freeze``); a full collection under load then walks only what
    requests left, not the whole heap (a pause that every request in flight waits for)."""
    gc.collect()
    gc.freeze()


def run_servers(servers: Sequence[tuple[uvicorn.Server, list[socket.socket]]]) -> None:
    """Serve each server on its listening sockets until interrupted (uvloop when installed, as
    uvicorn[standard] brings it)."""
    settle_heap()

    async def run_all() -> None:
        await asyncio.gather(*(server.serve(sockets=socks) for server, socks in servers))

    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(run_all())
    else:
        uvloop.run(run_all())
