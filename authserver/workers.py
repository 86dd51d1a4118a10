"""Several worker processes behind one listening socket (``serve --workers N``).

Chosen: uvicorn's own supervisor (:class:`uvicorn.supervisors.Multiprocess`) on the socket
``serve`` binds first. It is the maintained path: it starts workers with the ``spawn`` method (a
fresh interpreter each: no event loop, thread or connection pool is copied across a ``fork``),
hands them the pre-bound socket (the kernel spreads connections over the workers), replaces a
worker that dies or hangs, and on SIGTERM or SIGINT tells every worker to shut down gracefully:
a worker stops accepting, lets its in-flight requests finish (at most ``GRACEFUL_SHUTDOWN``
seconds) and closes its database pool and Redis link in the app's lifespan. A worker builds its
app with :func:`worker_app` from the same environment and ``.env`` the parent validated.

Hooks: :data:`BEFORE_WORKERS` are called in the parent, once, before any worker starts (for
example to prepare a multiprocess metrics directory).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette
from uvicorn.supervisors import Multiprocess

from .config import Settings, load_settings
from .logs import configure_logging

log = logging.getLogger("authserver")

#: Seconds a shutting-down worker waits for its in-flight requests.
GRACEFUL_SHUTDOWN = 30
#: Called in the parent with the settings and the number of workers, before any worker starts.
BEFORE_WORKERS: list[Callable[[Settings, int], None]] = []


def worker_app() -> Starlette:
    """The app of one worker process (a uvicorn factory: settings from the environment)."""
    from .app import create_app

    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def run_workers(settings: Settings, sock: socket.socket, workers: int) -> None:
    """Serve ``sock`` with ``workers`` processes until SIGTERM or SIGINT; returns once all have ended."""
    for hook in BEFORE_WORKERS:
        hook(settings, workers)
    config = uvicorn.Config(
        "authserver.workers:worker_app",
        factory=True,
        workers=workers,
        log_level=settings.log_level,
        access_log=False,  # NOTE: an access log line would carry sandbox tokens in query strings
        log_config=None,
        proxy_headers=True,
        server_header=False,
        timeout_keep_alive=75,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
    )
    Multiprocess(config, sockets=[sock]).run()
