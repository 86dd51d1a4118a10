"""Connection drops and shed requests of this process: the server's connection guard tells, the app's
metrics listen.

The guard lives in the server process layer and the metrics in the app, so they meet here, below both.
"""

from __future__ import annotations

from collections.abc import Callable


def _ignore(reason: str) -> None:
    pass


#: Told the reason (``header_timeout``, ``body_timeout``, ``evicted``, ``headers_too_large``) each
#: time a connection of this process is closed by the limits: see :func:`report_drops_to`.
_drop_listener: Callable[[str], None] = _ignore


def report_drops_to(listener: Callable[[str], None]) -> None:
    """Send this process's connection drops to ``listener`` (the app's metrics)."""
    global _drop_listener
    _drop_listener = listener


def dropped(reason: str) -> None:
    """A connection of this process was closed by the limits, for ``reason``."""
    _drop_listener(reason)


#: Told the path (``/auth``, ``/token``) of each request of this process answered 503 by admission
#: control: see :func:`report_shed_to`.
_shed_listener: Callable[[str], None] = _ignore


def report_shed_to(listener: Callable[[str], None]) -> None:
    """Send this process's shed requests to ``listener`` (the app's metrics)."""
    global _shed_listener
    _shed_listener = listener


def shed(path: str) -> None:
    """A request of this process for ``path`` was refused by admission control (503)."""
    _shed_listener(path)
