"""Flood protection for ``/login``: a failure throttle and a bound on concurrent password hashing.

Each argon2id verification costs tens of milliseconds and 64 MiB, so an unbounded number in
parallel can exhaust the machine; and repeated failures are how passwords are guessed.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol, TypeVar

from authserver.errors import RateLimitedError, UnavailableError

T = TypeVar("T")


@dataclass(frozen=True)
class Attempt:
    """One login attempt, counted before its password is checked (see :meth:`Throttle.attempt`)."""

    username: str
    address: str
    at: float
    #: Unique among the attempts counted under the same keys (what a give-back removes).
    id: str
    #: Counted in Redis (:class:`~authserver.infra.sharedthrottle.SharedThrottle`), else in this process.
    shared: bool = False


class Throttle(Protocol):
    """The login throttle as ``/login`` uses it: in memory (one process) or shared (Redis).

    Every attempt is counted *before* its password is checked, in one step with the check of the
    limits, so that concurrent guesses cannot all pass while earlier ones are still being verified;
    an attempt that turns out not to be a wrong password is given back."""

    async def attempt(self, username: str, address: str, now: float) -> Attempt:
        """Count one attempt. :raises RateLimitedError: either limit is reached (nothing is counted)."""
        ...

    async def give_back(self, attempt: Attempt) -> None:
        """Uncount ``attempt``: no wrong password was found (none was checked, or the account refused a right one)."""
        ...

    async def succeeded(self, attempt: Attempt) -> None:
        """The password was right: give ``attempt`` back and forget the username's failures from its address."""
        ...


class Gate(Protocol):
    """Bounds concurrent password checks. :raises UnavailableError: (503) when too many wait."""

    def admit(self, address: str) -> AbstractContextManager[None]:
        """One login from ``address`` in flight. :raises RateLimitedError: (429) too many from it already."""
        ...

    async def run(self, call: Callable[[], Awaitable[T]]) -> T: ...


class LoginThrottle:
    """Refuses logins after too many recent failures from one address, or for one username from
    one address (so that nobody can lock a user out from elsewhere). Pure: time is a parameter.

    What it counts are attempts: :meth:`attempt` counts one under both keys before the password is
    checked, or refuses it; a right password gives it back (:meth:`succeeded`), a wrong one leaves
    it counted, so that what is counted is the failures plus the checks still in flight."""

    def __init__(
        self, *, per_address: int = 50, per_user_address: int = 10, window: float = 300.0, max_keys: int = 10_000
    ) -> None:
        self.per_address = per_address
        self.per_user_address = per_user_address
        self.window = window
        self.max_keys = max_keys
        self._attempts: dict[tuple[str, ...], deque[Attempt]] = {}
        self._ids = itertools.count()

    def _keys(self, username: str, address: str) -> tuple[tuple[tuple[str, ...], int], ...]:
        return (((address,), self.per_address), ((address, username.lower()), self.per_user_address))

    def _recent(self, key: tuple[str, ...], now: float) -> int:
        attempts = self._attempts.get(key)
        if attempts is None:
            return 0
        while attempts and attempts[0].at <= now - self.window:
            attempts.popleft()
        if not attempts:
            del self._attempts[key]
            return 0
        return len(attempts)

    def attempt(self, username: str, address: str, now: float) -> Attempt:
        """Count one attempt under both keys. :raises RateLimitedError: when either limit is reached."""
        keys = self._keys(username, address)
        for key, limit in keys:
            if self._recent(key, now) >= limit:
                raise RateLimitedError(retry_message(self.window))
        if len(self._attempts) >= self.max_keys:
            self._attempts.clear()  # bounded memory; an attacker gains a fresh window at most
        attempt = Attempt(username, address, now, str(next(self._ids)))
        for key, _ in keys:
            self._attempts.setdefault(key, deque()).append(attempt)
        return attempt

    def give_back(self, attempt: Attempt) -> None:
        for key, _ in self._keys(attempt.username, attempt.address):
            attempts = self._attempts.get(key)
            if attempts is not None and attempt in attempts:
                attempts.remove(attempt)
                if not attempts:
                    del self._attempts[key]

    def succeeded(self, attempt: Attempt) -> None:
        self.give_back(attempt)
        self._attempts.pop((attempt.address, attempt.username.lower()), None)


class MemoryThrottle:
    """:class:`Throttle` for one process: a :class:`LoginThrottle` behind the async interface."""

    def __init__(self, counts: LoginThrottle | None = None) -> None:
        self.counts = counts or LoginThrottle()

    async def attempt(self, username: str, address: str, now: float) -> Attempt:
        return self.counts.attempt(username, address, now)

    async def give_back(self, attempt: Attempt) -> None:
        self.counts.give_back(attempt)

    async def succeeded(self, attempt: Attempt) -> None:
        self.counts.succeeded(attempt)


def retry_message(window: float) -> str:
    minutes = max(1, int(window // 60))
    return f"too many failed logins; try again in {minutes} minute{'s' if minutes != 1 else ''}"


#: Password checks one address may have in flight at once in one process (see :class:`ConcurrencyGate`).
PER_ADDRESS_IN_FLIGHT = 2


class ConcurrencyGate:
    """At most ``slots`` calls run at once and at most ``queue`` wait; the rest are refused (503).
    And at most ``per_address`` logins from one address are in flight at once (:meth:`admit`): one
    address cannot fill the slots and the queue, and a burst from it is refused before it is counted."""

    def __init__(self, slots: int, queue: int, *, per_address: int = PER_ADDRESS_IN_FLIGHT) -> None:
        self._semaphore = asyncio.Semaphore(slots)
        self._queue = queue
        self._waiting = 0
        self.per_address = per_address
        self._in_flight: dict[str, int] = {}

    @contextmanager
    def admit(self, address: str) -> Iterator[None]:
        """:raises RateLimitedError: ``per_address`` logins from ``address`` are in flight already."""
        held = self._in_flight.get(address, 0)
        if held >= self.per_address:
            raise RateLimitedError("too many logins at once from this address; try again shortly")
        self._in_flight[address] = held + 1
        try:
            yield
        finally:
            left = self._in_flight[address] - 1
            if left:
                self._in_flight[address] = left
            else:
                del self._in_flight[address]

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
