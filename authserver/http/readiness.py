"""``GET /readyz``: whether this instance can serve now. ``/healthz`` stays a liveness check.

Ready means the database answers with the current schema (and, for SQLite, the file is still the
one that was opened, and writable), and Redis answers when ``REDIS_URL`` is set. A change of
state is logged once (an error when it stops being ready), whether a probe or the background
watch (every ``interval`` seconds) noticed it, so a deleted database file is never served from
silently even when nobody probes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from authserver.http.responses import json_response

if TYPE_CHECKING:
    from authserver.wiring import Services

log = logging.getLogger("authserver.readiness")


class Readiness:
    def __init__(self, services: Services, *, interval: float = 5.0) -> None:
        self.services = services
        self.interval = interval
        self._problems: dict[str, str] = {}

    async def problems(self) -> dict[str, str]:
        """Each failing check with its reason (empty: ready); logs what changed since last time."""
        found: dict[str, str] = {}
        database = await self.services.storage.ready()
        if database is not None:
            found["database"] = database
        if self.services.redis is not None:
            redis = await self.services.redis.ping()
            # Redis answers, but its announcements (the only changes that can be incomplete) are not back yet
            if redis is None and not self.services.changes.complete:
                redis = f"Redis {self.services.redis.description} answers, session announcements not yet resumed"
            if redis is not None:
                found["redis"] = redis
        offset = self.services.offset
        if self.services.settings.time_sync and offset is not None:
            clock = offset.problem(self.services.settings.time_sync_max_offset)
            if clock is not None:
                found["clock"] = clock
        for name, problem in found.items():
            if self._problems.get(name) != problem:
                # NOTE: the answer never names the database's file; the log does, for the operator.
                where = f" ({self.services.storage.description})" if name == "database" else ""
                log.error("not ready: %s: %s%s", name, problem, where)
        for name in self._problems.keys() - found.keys():
            log.warning("ready again: %s answers", name)
        self._problems = found
        return found

    async def endpoint(self, request: Request) -> Response:
        problems = await self.problems()
        checks = {"database": problems.get("database", "ok")}
        if self.services.redis is not None:
            checks["redis"] = problems.get("redis", "ok")
        if self.services.settings.time_sync:
            checks["clock"] = problems.get("clock", "ok")
        return json_response(
            {"status": "not ready" if problems else "ready", "checks": checks}, 503 if problems else 200
        )

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.problems()
            except Exception:  # a check that itself fails must not end the watch
                log.exception("readiness check failed")
