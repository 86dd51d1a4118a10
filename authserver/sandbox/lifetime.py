"""The token timeline of a live connection (spec 6.8): AUTH ahead of expiry, DISCONNECTED at expiry
or when a revocation applies.

``auth_lead_ms`` (30 s, as Ably) before expiry the connection is sent AUTH, but only when the token lives
longer than that lead: Ably prompts no token shorter than 30 s (RTN22; ably-js ``auth_token_expires`` and
``auth_jwt_with_token_that_expires`` expect a 5 s token to end in DISCONNECTED 40142, while ably-python's
``realtimeauth_test.py::test_jwt_reauth`` gets an in-band UPDATE for a 35 s JWT). A valid AUTH reply
swaps the credentials (the session then calls :meth:`TokenWatch.restart`). At expiry without one it is
sent DISCONNECTED 40142 and its transport closes, keeping the connection for resume. A revocation covering
the token sends DISCONNECTED 40141 (or AUTH first, when it applies after a margin).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from authserver.errors import TokenError
from authserver.sandbox.connections import Connection, Transport
from authserver.sandbox.protocol import Action, error_frame
from authserver.sandbox.revocation import Revocations

log = logging.getLogger("authserver.sandbox")

EXPIRED = TokenError("Key/token status changed (token expired)", code=40142, status=401)
REVOKED = TokenError("Key/token status changed (token revoked)", code=40141, status=401)


def auth_prompt_at(issued_ms: int, expires_ms: int, *, lead_ms: int, short_tokens: bool = False) -> int | None:
    """When to send AUTH for a token, or ``None`` for no prompt (the token is left to expire).

    As Ably: ``lead_ms`` before expiry, for tokens that live longer than ``lead_ms``. A connection that
    arrives inside that window is prompted at once (the time returned is already past). With
    ``short_tokens`` (a deviation, see :class:`~.limits.SandboxLimits`) shorter tokens are prompted at
    half their lifetime.
    """
    lifetime = expires_ms - issued_ms
    if lifetime > lead_ms:
        return expires_ms - lead_ms
    if short_tokens:
        return expires_ms - lifetime // 2
    return None


class TokenWatch:
    """Timers for one connection's current token on one transport; :meth:`stop` cancels them."""

    def __init__(
        self,
        connection: Connection,
        transport: Transport,
        *,
        now_ms: Callable[[], int],
        revocations: Revocations,
        auth_prompts: bool,
        auth_lead_ms: int,
        short_token_prompts: bool = False,
    ) -> None:
        self._connection = connection
        self._transport = transport
        self._now_ms = now_ms
        self._revocations = revocations
        self._auth_prompts = auth_prompts
        self._auth_lead_ms = auth_lead_ms
        self._short_token_prompts = short_token_prompts
        self._expiry: asyncio.Task[None] | None = None
        self._revocation: asyncio.Task[None] | None = None

    def restart(self) -> None:
        """Follow the connection's (new) grant from now on."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        grant = self._connection.grant
        if grant.expires_ms is not None:
            self._expiry = asyncio.create_task(self._expire(grant.issued_ms, grant.expires_ms))

    def stop(self) -> None:
        for task in (self._expiry, self._revocation):
            if task is not None:
                task.cancel()

    async def _expire(self, issued_ms: int, expires_ms: int) -> None:
        if self._auth_prompts:
            prompt_at = auth_prompt_at(
                issued_ms, expires_ms, lead_ms=self._auth_lead_ms, short_tokens=self._short_token_prompts
            )
            if prompt_at is not None:
                await self._sleep_until(prompt_at)
                log.info(
                    "connection %s: token expires in %d ms, sending AUTH", self._connection.id, expires_ms - prompt_at
                )
                self._transport.send({"action": int(Action.AUTH)})
        await self._sleep_until(expires_ms)
        log.info("connection %s: token expired without renewal", self._connection.id)
        self._transport.close(error_frame(Action.DISCONNECTED, EXPIRED))

    async def _sleep_until(self, at_ms: int) -> None:
        delay = (at_ms - self._now_ms()) / 1000
        if delay > 0:
            await asyncio.sleep(delay)

    def revoked(self, applies_at_ms: int) -> None:
        """A revocation covers the current token from ``applies_at_ms`` on (``Connection.on_revoked``)."""
        if applies_at_ms <= self._now_ms():
            self._transport.close(error_frame(Action.DISCONNECTED, REVOKED))
            return
        self._transport.send({"action": int(Action.AUTH)})
        if self._revocation is None or self._revocation.done():
            self._revocation = asyncio.create_task(self._enforce_revocation(applies_at_ms))

    async def _enforce_revocation(self, applies_at_ms: int) -> None:
        # Rules are kept per call: another one may cover the token the connection holds by then, later.
        while True:
            await self._sleep_until(applies_at_ms)
            rule = self._revocations.find(self._connection.grant)
            if rule is None:
                return
            if rule.applies_at_ms <= self._now_ms():
                self._transport.close(error_frame(Action.DISCONNECTED, REVOKED))
                return
            applies_at_ms = rule.applies_at_ms
