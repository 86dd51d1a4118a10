"""The database breaker: while the database does not answer, what needs it is refused at once.

A failed or slow database call (a connection cut, no connection within the wait) *opens* the breaker.
While it is open every call that needs the database is refused at once with
:class:`~authserver.errors.StoreUnavailableError` (503, ``Retry-After: 1``), without waiting for a
pool that cannot connect. A background probe asks the database every ``interval`` seconds; the first
probe that succeeds *closes* the breaker, and calls go to the database again. Both changes are logged
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from authserver.errors import StoreUnavailableError

log = logging.getLogger("authserver.storage")

#: How often an open breaker asks the database whether it answers again (seconds).
PROBE_INTERVAL = 0.5


class Breaker:
    """Whether the database at ``description`` is worth asking; ``probe`` raises while it does not answer."""

    def __init__(
        self,
        probe: Callable[[], Awaitable[None]],
        *,
        description: str,
        interval: float = PROBE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.probe = probe
        self.description = description
        self.interval = interval
        self.clock = clock
        #: Why the breaker is open (None: closed).
        self.problem: str | None = None
        self._opened_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def check(self) -> None:
        """:raises StoreUnavailableError: (503, at once) while the breaker is open."""
        if self.problem is not None:
            raise StoreUnavailableError(f"database unavailable: {self.problem}")

    def trip(self, problem: str) -> None:
        """A call found the database not answering: open the breaker and probe in the background."""
        if self.problem is None:
            self._opened_at = self.clock()
            log.error(
                "database %s is not answering (%s): requests that need it get 503 at once;"
                " asking it again every %.1f s",
                self.description,
                problem,
                self.interval,
            )
        self.problem = problem
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._probe(), name="authserver database probe")

    async def _probe(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.probe()
            except Exception as exc:  # still not answering (whatever the driver raised): ask again later
                log.debug("database probe failed: %s", type(exc).__name__)
                continue
            break
        self.problem = None
        log.warning(
            "database %s answers again (after %.1f s): requests go to it again",
            self.description,
            self.clock() - self._opened_at,
        )

    async def close(self) -> None:
        """Stop probing (the engine is closing)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
