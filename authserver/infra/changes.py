"""Announcements that remembered sessions may be out of date.

A logout, a password change, a disabled or removed account or a new role must reach every cached
session at once. Whoever makes such a change calls :meth:`SessionChanges.announce`; every session
cache subscribed to it forgets what it remembered. :class:`LocalChanges` reaches the caches of this
process; a shared implementation (Redis publish/subscribe) reaches every process and machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class SessionChanges(Protocol):
    @property
    def complete(self) -> bool:
        """Whether every change made anywhere reaches the listeners now (False while a shared
        implementation has lost its connection: remembered sessions must then be rechecked soon)."""
        ...

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (synchronously, on the event loop) after every announced change."""
        ...

    async def announce(self) -> None:
        """Accounts or sessions changed: every remembered session must be looked up again."""
        ...

    def start(self) -> None:
        """Begin hearing of changes made elsewhere (on the running event loop)."""
        ...

    async def close(self) -> None:
        """Stop hearing of changes; release what :meth:`start` took."""
        ...


class Listeners:
    """The session caches of this process that want to hear of changes: what every implementation shares."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def notify(self) -> None:
        for listener in self._listeners:
            listener()


class LocalChanges(Listeners):
    """Changes reach the listeners of this process only, at once."""

    #: One process: every change it makes reaches its listeners.
    complete = True

    async def announce(self) -> None:
        self.notify()

    def start(self) -> None:
        pass  # nothing is made elsewhere

    async def close(self) -> None:
        pass
