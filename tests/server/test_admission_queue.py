"""Admission control's queue, in process: uvicorn's protocol with the connection guard on a real
event loop (uvloop), connections whose transport records what the server wrote. Every request of one
turn of the loop is read before any handler runs; the limit counts those queued for the loop.

Nothing here is timed: the loop runs only when the test awaits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
import uvloop
from uvicorn.server import ServerState

from authserver.server.guard import START_LIMIT, ConnectionGuard, ConnectionLimits, GuardedProtocol, limit_connections

AUTH = b"GET /auth HTTP/1.1\r\nHost: a\r\n\r\n"
Scope = MutableMapping[str, Any]


class Transport(asyncio.Transport):
    """What the server wrote, and nothing else of a socket."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def ok(scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def serving(limits: ConnectionLimits) -> tuple[uvicorn.Config, ServerState]:
    config = uvicorn.Config(ok, log_level="warning", lifespan="off")
    limit_connections(config, limits)
    config.load()
    return config, ServerState()


def connect(config: uvicorn.Config, state: ServerState) -> tuple[GuardedProtocol, Transport]:
    protocol = GuardedProtocol(config=config, server_state=state, app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


def statuses(transports: list[Transport]) -> list[int]:
    return [int(t.written.split(b" ", 2)[1]) for t in transports if t.written]


def test_past_the_limit_of_queued_requests_a_turn_of_the_loop_sheds_and_every_place_comes_back() -> None:
    async def scenario() -> None:
        config, state = serving(ConnectionLimits(max_in_flight=512, max_queue_delay=0.005))
        guard = ConnectionGuard.of(config)
        transports = []
        for _ in range(START_LIMIT + 8):  # all read in one turn: no handler has run yet
            protocol, transport = connect(config, state)
            protocol.data_received(AUTH)
            transports.append(transport)
        assert guard.queued == START_LIMIT
        assert statuses(transports) == [503] * 8  # answered at once, before any handler
        await asyncio.sleep(0.05)  # the loop runs the handlers
        assert guard.queued == 0 and guard.running == 0
        assert sorted(statuses(transports)) == [200] * START_LIMIT + [503] * 8

    uvloop.run(scenario())


def test_a_fixed_limit_counts_requests_in_flight_and_queues_nothing() -> None:
    async def scenario() -> None:
        config, state = serving(ConnectionLimits(max_in_flight=5, max_queue_delay=0.0))
        guard = ConnectionGuard.of(config)
        transports = []
        for _ in range(7):
            protocol, transport = connect(config, state)
            protocol.data_received(AUTH)
            transports.append(transport)
        assert guard.queued == 0 and guard.running == 5
        assert statuses(transports) == [503] * 2
        await asyncio.sleep(0.05)
        assert guard.running == 0
        assert sorted(statuses(transports)) == [200] * 5 + [503] * 2

    uvloop.run(scenario())


def test_pipelined_and_probe_requests_are_never_queued_nor_shed() -> None:
    async def scenario() -> None:
        config, state = serving(ConnectionLimits(max_in_flight=512, max_queue_delay=0.005))
        guard = ConnectionGuard.of(config)
        protocol, transport = connect(config, state)
        protocol.data_received(AUTH + AUTH + b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        assert guard.queued == 1  # the first only: the others wait for its answer, not for the loop
        await asyncio.sleep(0.05)
        assert guard.queued == 0 and guard.running == 0
        assert transport.written.count(b"HTTP/1.1 200 OK") == 3

    uvloop.run(scenario())
