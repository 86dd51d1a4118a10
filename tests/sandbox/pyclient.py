"""Driving the real ably-python 3.x client against the sandbox."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from ably import AblyRealtime
from ably.transport import websockettransport

from authserver.cli.smoke import connect_with_port


def patch_realtime_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """Apply the ably-python#567 workaround for the duration of one test."""
    monkeypatch.setattr(websockettransport.WebSocketTransport, "connect", connect_with_port)


@contextlib.asynccontextmanager
async def realtime(port: int, auth_url: str, *, binary: bool, **auth_params: str) -> AsyncIterator[Any]:
    """An AblyRealtime client on the sandbox at ``port``, closed (bounded) afterwards."""
    client = AblyRealtime(
        auth_url=auth_url,
        auth_params=auth_params,
        endpoint="127.0.0.1",
        port=port,
        tls=False,
        use_binary_protocol=binary,
    )
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), timeout=5)


async def wait_for_state(client: Any, state: str, *, timeout: float = 10) -> None:
    """Wait until ``client.connection.state`` is ``state`` (polling: the SDK's events vary by state)."""
    async with asyncio.timeout(timeout):
        while str(client.connection.state.value) != state:
            await asyncio.sleep(0.02)


async def eventually(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def run(scenario: Callable[[], Awaitable[None]], *, timeout: float) -> None:
    """Run an async scenario from a sync test, bounded by ``timeout`` seconds."""

    async def bounded() -> None:
        await asyncio.wait_for(scenario(), timeout=timeout)

    asyncio.run(bounded())
