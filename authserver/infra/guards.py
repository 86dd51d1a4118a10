"""Flood protection for ``/login``: a failure throttle and a bound on concurrent password hashing.

Each argon2id verification costs tens of milliseconds and 64 MiB, so an unbounded number in
parallel can exhaust the machine; and repeated failures are how passwords are guessed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from authserver.errors import RateLimitedError, UnavailableError

T = TypeVar("T")


class Throttle(Protocol):
    """The failed-login throttle as ``/login`` uses it: in memory (one process) or shared (Redis)."""

    async def check(self, username: str, address: str, now: float) -> None:
        """:raises RateLimitedError: too many recent failures for this username and address, or this address."""
        ...

    async def failed(self, username: str, address: str, now: float) -> None: ...

    async def succeeded(self, username: str, address: str) -> None: ...


class Gate(Protocol):
    """Bounds concurrent password checks. :raises UnavailableError: (503) when too many wait."""

    async def run(self, call: Callable[[], Awaitable[T]]) -> T: ...


class LoginThrottle:
    """Refuses logins after too many recent failures from one address, or for one username from
    one address (so that nobody can lock a user out from elsewhere). Pure: time is a parameter."""

    def __init__(
        self, *, per_address: int = 50, per_user_address: int = 10, window: float = 300.0, max_keys: int = 10_000
    ) -> None:
        self.per_address = per_address
        self.per_user_address = per_user_address
        self.window = window
        self.max_keys = max_keys
        self._failures: dict[tuple[str, ...], deque[float]] = {}

    def _keys(self, username: str, address: str) -> tuple[tuple[tuple[str, ...], int], ...]:
        return (((address,), self.per_address), ((address, username.lower()), self.per_user_address))

    def _recent(self, key: tuple[str, ...], now: float) -> int:
        times = self._failures.get(key)
        if times is None:
            return 0
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0
        return len(times)

    def check(self, username: str, address: str, now: float) -> None:
        """:raises RateLimitedError: when either limit is reached."""
        for key, limit in self._keys(username, address):
            if self._recent(key, now) >= limit:
                raise RateLimitedError(retry_message(self.window))

    def failed(self, username: str, address: str, now: float) -> None:
        if len(self._failures) >= self.max_keys:
            self._failures.clear()  # bounded memory; an attacker gains a fresh window at most
        for key, _ in self._keys(username, address):
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, username: str, address: str) -> None:
        self._failures.pop((address, username.lower()), None)


class MemoryThrottle:
    """:class:`Throttle` for one process: a :class:`LoginThrottle` behind the async interface."""

    def __init__(self, counts: LoginThrottle | None = None) -> None:
        self.counts = counts or LoginThrottle()

    async def check(self, username: str, address: str, now: float) -> None:
        self.counts.check(username, address, now)

    async def failed(self, username: str, address: str, now: float) -> None:
        self.counts.failed(username, address, now)

    async def succeeded(self, username: str, address: str) -> None:
        self.counts.succeeded(username, address)


def retry_message(window: float) -> str:
    minutes = max(1, int(window // 60))
    return f"too many failed logins; try again in {minutes} minute{'s' if minutes != 1 else ''}"


class ConcurrencyGate:
    """At most ``slots`` calls run at once and at most ``queue`` wait; the rest are refused (503)."""

    def __init__(self, slots: int, queue: int) -> None:
        self._semaphore = asyncio.Semaphore(slots)
        self._queue = queue
        self._waiting = 0

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        if self._semaphore.locked() and self._waiting >= self._queue:
            raise UnavailableError("too many logins in progress; try again shortly")
        self._waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self._waiting -= 1
        try:
            return await call()
        finally:
            self._semaphore.release()
