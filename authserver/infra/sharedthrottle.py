"""The login throttle shared through Redis (``REDIS_URL``): the rules of
:class:`~authserver.infra.guards.LoginThrottle`, counted for every worker and machine at once.

Each key (the address; the address and username) is a sorted set of attempts scored by their time.
One script drops what is older than the window, refuses when either set is full and otherwise adds
the attempt to both, in one step on the server: concurrent attempts on any number of workers cannot
all pass the check. A give-back removes exactly that attempt (its member is unique), which the
``limits`` library's moving window cannot do. While Redis does not answer, attempts are counted in
this process's memory (as the other limits are, see :class:`~authserver.infra.redislink.RedisLink`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from authserver.errors import RateLimitedError
from authserver.infra.guards import Attempt, LoginThrottle, retry_message
from authserver.infra.redislink import RedisLink, unreachable_errors

if TYPE_CHECKING:
    from redis.asyncio.client import Pipeline

#: KEYS: the address's attempts, the (address, username)'s attempts.
#: ARGV: now, the window (seconds), the address's limit, the username's limit, this attempt's member.
ATTEMPT_SCRIPT = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local limits = {tonumber(ARGV[3]), tonumber(ARGV[4])}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= limits[i] then
    return 0
  end
end
local ttl = math.ceil(window * 1000)
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[5])
  redis.call('PEXPIRE', key, ttl)
end
return 1
"""


class SharedThrottle:
    """:class:`~authserver.infra.guards.Throttle` in Redis, with this process's memory as the fallback."""

    def __init__(
        self, link: RedisLink, *, per_address: int, per_user_address: int, window: int, prefix: str = "authserver"
    ) -> None:
        self.link = link
        self.window = window
        self.per_address = per_address
        self.per_user_address = per_user_address
        self.prefix = prefix
        self.local = LoginThrottle(per_address=per_address, per_user_address=per_user_address, window=float(window))
        self._script = link.client.register_script(ATTEMPT_SCRIPT)

    def _keys(self, username: str, address: str) -> list[str]:
        # One hash tag per address: both keys of a script live on one node of a Redis Cluster.
        base = f"{self.prefix}:login:{{{address}}}"
        return [base, f"{base}:{username.lower()}"]

    async def attempt(self, username: str, address: str, now: float) -> Attempt:
        if self.link.usable():
            attempt = Attempt(username, address, now, secrets.token_hex(8), shared=True)
            args: list[str | int] = [repr(now), self.window, self.per_address, self.per_user_address, attempt.id]
            try:
                counted = await self._script(keys=self._keys(username, address), args=args)
            except unreachable_errors() as exc:
                self.link.failed("limits", exc)
            else:
                self.link.succeeded()
                if not counted:
                    raise RateLimitedError(retry_message(self.window))
                return attempt
        return self.local.attempt(username, address, now)

    async def give_back(self, attempt: Attempt) -> None:
        if not attempt.shared:
            self.local.give_back(attempt)
            return
        address_key, user_key = self._keys(attempt.username, attempt.address)
        await self._write(lambda pipe: (pipe.zrem(address_key, attempt.id), pipe.zrem(user_key, attempt.id)))

    async def succeeded(self, attempt: Attempt) -> None:
        if not attempt.shared:
            self.local.succeeded(attempt)
            return
        address_key, user_key = self._keys(attempt.username, attempt.address)
        await self._write(lambda pipe: (pipe.zrem(address_key, attempt.id), pipe.delete(user_key)))

    async def _write(self, commands: Callable[[Pipeline], object]) -> None:
        """Run ``commands(pipeline)`` in one transaction. Redis away: the attempt stays counted until
        its window passes (the safe side)."""
        try:
            async with self.link.client.pipeline(transaction=True) as pipe:
                commands(pipe)
                await pipe.execute()
        except unreachable_errors() as exc:
            self.link.failed("limits", exc)
        else:
            self.link.succeeded()
