"""Ids seen once (the ``jti`` of OpenID Connect logout tokens), shared by every worker and machine through
Redis: ``SET NX EX``, so the first to record an id wins and Redis forgets it when it may no longer come
back anyway. While Redis is not answering, the fallback (the database) records them instead."""

from __future__ import annotations

import math
from typing import Protocol

from authserver.infra.redislink import RedisLink, unreachable_errors

PREFIX = "authserver:logout-jti:"


class SeenIds(Protocol):
    async def claim(self, token_id: str, *, expires: float, now: float) -> bool:
        """Record ``token_id`` until ``expires``; False when it was recorded before."""
        ...

    async def release(self, token_id: str) -> None: ...


class SharedSeenIds:
    """:class:`SeenIds` in Redis, ``fallback`` while Redis is away."""

    def __init__(self, link: RedisLink, fallback: SeenIds) -> None:
        self.link = link
        self.fallback = fallback

    async def claim(self, token_id: str, *, expires: float, now: float) -> bool:
        if not self.link.usable():
            return await self.fallback.claim(token_id, expires=expires, now=now)
        try:
            fresh = await self.link.client.set(PREFIX + token_id, b"1", nx=True, ex=max(1, math.ceil(expires - now)))
        except unreachable_errors() as exc:
            self.link.failed("logout-jti", exc)
            return await self.fallback.claim(token_id, expires=expires, now=now)
        self.link.succeeded()
        return bool(fresh)

    async def release(self, token_id: str) -> None:
        await self.fallback.release(token_id)
        if not self.link.usable():
            return
        try:
            await self.link.client.delete(PREFIX + token_id)
        except unreachable_errors() as exc:
            self.link.failed("logout-jti", exc)
