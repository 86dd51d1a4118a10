"""The connection to Redis (``REDIS_URL``): shared limits and session announcements across every
worker and machine, and what happens while Redis is away.

Redis down never fails a request: each user of the link falls back to this process's own state
(local limits, the sessions' one-second recheck) and the link says so once in the log (and to
its listeners, the hook for a metric); when Redis answers again it says that too. While Redis is
down, it is tried again at most once per ``retry_after`` seconds, so requests do not each wait
for a connection that will fail.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from authserver.infra.changes import Listeners

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger("authserver.redis")

#: The publish/subscribe channel of session announcements.
CHANNEL = "authserver:sessions"


def unreachable_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "Redis is not answering" (the client's own, and the socket's). The redis
    package is imported only when a link is made (``REDIS_URL``): a worker without it stays smaller."""
    from redis.exceptions import RedisError

    return (RedisError, OSError, asyncio.TimeoutError)


def safe_redis_url(url: str) -> str:
    """``url`` without its password, for logs and messages."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{user}{parts.hostname or 'localhost'}{port}{parts.path}"


class RedisLink:
    """One Redis server as this process sees it: a client, and whether it is answering."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 0.5,
        retry_after: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self.description = safe_redis_url(url)
        self.timeout = timeout
        self.retry_after = retry_after
        self.clock = clock
        import redis.asyncio as aioredis

        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=5
        )
        self.available = True
        self._retry_at = 0.0
        #: Called with ``True``/``False`` when Redis comes back / goes away (a metric's hook).
        self.listeners: list[Callable[[bool], None]] = []
        #: Called with what the operation was for ("limits", "announce", "subscribe", "ping") on every failure.
        self.on_error = on_error  # each failed operation, by what it was for (the metrics)

    def usable(self) -> bool:
        """Whether to try Redis now: it answered last time, or it is time to try again."""
        return self.available or self.clock() >= self._retry_at

    def failed(self, what: str, exc: BaseException) -> None:
        """An operation for ``what`` ("limits", "announce", "subscribe", "ping") found Redis not answering."""
        self._retry_at = self.clock() + self.retry_after
        if self.on_error is not None:
            self.on_error(what)
        if self.available:
            self.available = False
            log.warning(
                "Redis %s is not answering (%s: %s, on %s): this process falls back to its own state"
                " (local limits; sessions rechecked every second) until it answers again",
                self.description,
                type(exc).__name__,
                str(exc).splitlines()[0][:200] if str(exc) else "no detail",
                what,
            )
            for listener in self.listeners:
                listener(False)

    def succeeded(self) -> None:
        if not self.available:
            self.available = True
            log.warning("Redis %s answers again: limits and session announcements are shared again", self.description)
            for listener in self.listeners:
                listener(True)

    async def ping(self) -> str | None:
        """None when Redis answers, else why not (for ``/readyz`` and ``check``)."""
        try:
            await self.client.ping()
        except unreachable_errors() as exc:
            self.failed("ping", exc)
            return f"Redis {self.description} is not answering ({type(exc).__name__})"
        self.succeeded()
        return None

    async def close(self) -> None:
        await self.client.aclose(close_connection_pool=True)


class RedisChanges(Listeners):
    """:class:`~authserver.infra.changes.SessionChanges` shared by every process on one Redis.

    ``announce`` tells this process's listeners at once, then publishes; every other process's
    subscriber tells its listeners on arrival. A subscriber that lost Redis tells its listeners
    when it gets back (announcements may have been missed meanwhile), and the sessions' one-second
    recheck covers the time in between.
    """

    def __init__(self, link: RedisLink) -> None:
        super().__init__()
        self.link = link
        self._origin = secrets.token_hex(8).encode("ascii")  # our own announcements come back: skip them
        self._task: asyncio.Task[None] | None = None
        self._pending = False
        self.subscribed = asyncio.Event()

    @property
    def unsent(self) -> bool:
        """An announcement could not be published (Redis did not answer) and is still waiting."""
        return self._pending

    @property
    def complete(self) -> bool:
        """Listening: every announcement of every instance arrives."""
        return self.subscribed.is_set()

    async def announce(self) -> None:
        self.notify()
        await self._publish()

    async def _publish(self) -> None:
        """Publish one announcement; one that cannot go out now goes out once Redis answers again
        (the other instances recheck every second meanwhile, but only if they lost Redis too)."""
        if not self.link.usable():
            self._pending = True
            return
        try:
            await self.link.client.publish(CHANNEL, self._origin)
        except unreachable_errors() as exc:
            self._pending = True
            self.link.failed("announce", exc)
        else:
            self._pending = False
            self.link.succeeded()

    def start(self) -> None:
        """Start listening for other processes' announcements (on the running event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen(), name="authserver session announcements")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _listen(self) -> None:
        while True:
            pubsub = self.link.client.pubsub()
            try:
                await pubsub.subscribe(CHANNEL)
                self.subscribed.set()
                self.link.succeeded()
                self.notify()  # whatever was announced while we were away is unknown: recheck all
                if self._pending:
                    await self._publish()  # and what we could not announce meanwhile goes out now
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("data") != self._origin:
                        self.notify()
            except unreachable_errors() as exc:
                self.subscribed.clear()
                self.link.failed("subscribe", exc)
                await asyncio.sleep(self.link.retry_after)
            finally:
                try:
                    await pubsub.aclose()
                except unreachable_errors():
                    pass
