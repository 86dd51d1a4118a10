"""Several worker processes behind one listening socket (``serve --workers N``).

Chosen: uvicorn's own supervisor (:class:`uvicorn.supervisors.Multiprocess`) on the socket
``serve`` binds first. It is the maintained path: it starts workers with the ``spawn`` method (a
fresh interpreter each: no event loop, thread or connection pool is copied across a ``fork``),
hands them the pre-bound socket (the kernel spreads connections over the workers), replaces a
worker that dies or hangs, and on SIGTERM or SIGINT tells every worker to shut down gracefully:
a worker stops accepting, lets its in-flight requests finish (at most
:data:`~authserver.server.serving.GRACEFUL_SHUTDOWN` seconds) and closes its database pool and Redis
link in the app's lifespan. A worker builds its app with :func:`worker_app` from the same
environment and ``.env`` the parent validated; the connection limits travel with the (pickled)
uvicorn config, one guard per worker.

Metrics: ``serve`` exports the prometheus-client multiprocess directory before the workers start
(:func:`authserver.infra.metrics.prepare_multiprocess_dir`); each worker's app finds it in its
environment. Hooks: :data:`BEFORE_WORKERS` are called in the parent, once, before any worker starts.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from starlette.applications import Starlette
from uvicorn.supervisors import Multiprocess

from authserver.config import Settings, load_settings
from authserver.infra.logs import configure_logging
from authserver.server.guard import ConnectionLimits
from authserver.server.serving import acceptors, settle_heap, uvicorn_config

log = logging.getLogger("authserver")

#: Called in the parent with the settings and the number of workers, before any worker starts.
BEFORE_WORKERS: list[Callable[[Settings, int], None]] = []


def worker_app() -> Starlette:
    """The app of one worker process (a uvicorn factory: settings from the environment)."""
    from authserver.http.app import create_app

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)  # metrics: the multiprocess directory the parent exported
    settle_heap()
    return app


def run_workers(settings: Settings, sock: socket.socket, workers: int, limits: ConnectionLimits) -> None:
    """Serve ``sock`` with ``workers`` processes until SIGTERM or SIGINT; returns once all have ended."""
    for hook in BEFORE_WORKERS:
        hook(settings, workers)
    config = uvicorn_config(f"{__name__}:worker_app", settings.log_level, limits, factory=True, workers=workers)
    listeners = acceptors(sock)
    try:
        Multiprocess(config, sockets=listeners).run()
    finally:
        for duplicate in listeners[1:]:
            duplicate.close()
