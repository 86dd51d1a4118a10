"""Rate limits on the ``limits`` library: in this process's memory, or shared through Redis.

:class:`Limiter` counts hits in a moving window on Redis when ``REDIS_URL`` is set, and falls back
to its own memory (per process) whenever Redis does not answer, so a request is never refused
or failed because Redis is away. :class:`AuthLimits` are the optional per-identity and per-address
limits of ``/auth`` on it (the login throttle has its own counting, see
:mod:`authserver.infra.sharedthrottle`).
"""

from __future__ import annotations

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from authserver.errors import RateLimitedError
from authserver.infra.redislink import RedisLink, unreachable_errors


def _failures() -> tuple[type[BaseException], ...]:
    return (StorageError, *unreachable_errors())


def parse_rate(value: str) -> RateLimitItem:
    """``"120/minute"``, ``"10 per 5 minutes"``... (the ``limits`` notation). :raises ValueError: otherwise."""
    try:
        return parse(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a rate such as 120/minute or 1000/hour") from None


class Limiter:
    """Moving-window counters in Redis (shared) or memory (this process), with the memory as fallback."""

    def __init__(self, link: RedisLink | None, *, prefix: str = "authserver") -> None:
        self.link = link
        self.local = MovingWindowRateLimiter(MemoryStorage())
        self.shared: MovingWindowRateLimiter | None = None
        if link is not None:
            storage = RedisStorage(
                "async+" + link.url if not link.url.startswith("async+") else link.url,
                implementation="redispy",
                wrap_exceptions=True,
                key_prefix=prefix,
                # one pool per process, closed with the link (limits passes options on to redis-py)
                connection_pool=link.client.connection_pool,  # type: ignore[arg-type]
            )
            self.shared = MovingWindowRateLimiter(storage)

    def _limiter(self) -> MovingWindowRateLimiter:
        if self.shared is not None and self.link is not None and self.link.usable():
            return self.shared
        return self.local

    async def _call(self, action: str, item: RateLimitItem, key: tuple[str, ...]) -> bool:
        limiter = self._limiter()
        try:
            if action == "hit":
                result = await limiter.hit(item, *key)
            elif action == "test":
                result = await limiter.test(item, *key)
            else:
                await limiter.clear(item, *key)
                result = True
        except _failures() as exc:
            if limiter is self.local or self.link is None:
                raise
            self.link.failed("limits", exc)
            return await self._call(action, item, key)
        if limiter is not self.local and self.link is not None:
            self.link.succeeded()
        return result

    async def test(self, item: RateLimitItem, *key: str) -> bool:
        """Whether one more hit would be allowed."""
        return await self._call("test", item, key)

    async def hit(self, item: RateLimitItem, *key: str) -> bool:
        """Count a hit; False when it went over the limit."""
        return await self._call("hit", item, key)

    async def clear(self, item: RateLimitItem, *key: str) -> None:
        await self._call("clear", item, key)


class AuthLimits:
    """Optional limits on ``/auth`` per identity (clientId) and per client address. Off by default:
    an Ably client asks once per token lifetime, so only a misbehaving client comes near them."""

    def __init__(self, limiter: Limiter, *, per_identity: RateLimitItem | None, per_address: RateLimitItem | None):
        self.limiter = limiter
        self.per_identity = per_identity
        self.per_address = per_address

    async def check(self, client_id: str, address: str) -> None:
        """Count this request. :raises RateLimitedError: (429, 42910) over either limit."""
        if self.per_identity is not None and not await self.limiter.hit(self.per_identity, "auth-id", client_id):
            raise RateLimitedError(f"too many token requests for this clientId (limit {self.per_identity})")
        if self.per_address is not None and not await self.limiter.hit(self.per_address, "auth-addr", address):
            raise RateLimitedError(f"too many token requests from this address (limit {self.per_address})")
