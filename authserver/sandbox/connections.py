"""Realtime connections: the state that survives a dropped transport (for resume) and the transport.

A :class:`Connection` outlives its WebSocket: when the socket goes, the connection waits
``connection_state_ttl_ms`` for a ``resume`` before it is discarded. A :class:`Transport` is one
WebSocket with a bounded outbox drained by a single writer task, so frames leave in order and a
slow client cannot make the sandbox buffer without limit.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from collections.abc import Callable, Iterator

from starlette.websockets import WebSocket

from .grants import Grant, Identity
from .limits import LimitError, SandboxLimits
from .protocol import Frame, WireFormat, encode_frame

log = logging.getLogger("authserver.sandbox")


class Transport:
    """One WebSocket. ``send`` never blocks; ``close`` flushes what is queued (plus a final frame)."""

    def __init__(self, websocket: WebSocket, wire_format: WireFormat, *, max_queue: int) -> None:
        self.wire_format: WireFormat = wire_format
        self.closing = False
        self.last_sent = asyncio.get_running_loop().time()
        self._websocket = websocket
        self._queue: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._max_queue = max_queue

    def send(self, frame: Frame) -> None:
        if self.closing:
            return
        if self._queue.qsize() >= self._max_queue:
            log.warning("dropping a transport whose client is not reading (%d frames queued)", self._max_queue)
            self.close()
            return
        self._queue.put_nowait(frame)

    def close(self, final: Frame | None = None) -> None:
        if self.closing:
            return
        if final is not None:
            self._queue.put_nowait(final)
        self.closing = True
        self._queue.put_nowait(None)

    async def run_writer(self) -> None:
        """Drain the outbox until ``close`` (or the socket fails), then close the socket."""
        loop = asyncio.get_running_loop()
        try:
            while (frame := await self._queue.get()) is not None:
                data = encode_frame(frame, self.wire_format)
                if isinstance(data, bytes):
                    await self._websocket.send_bytes(data)
                else:
                    await self._websocket.send_text(data)
                self.last_sent = loop.time()
        except Exception as exc:  # the peer went away mid-send: nothing more to deliver
            log.debug("transport write failed: %s", type(exc).__name__)
        finally:
            self.closing = True
            try:
                await self._websocket.close()
            except Exception:  # noqa: S110 - already closed by the peer
                pass


class Connection:
    """A realtime connection: credentials, identity, attachments and the current transport (if any)."""

    def __init__(self, connection_id: str, grant: Grant, identity: Identity, *, echo: bool) -> None:
        self.id = connection_id
        self.key = f"{connection_id}!{secrets.token_hex(6)}"
        self.grant = grant
        self.identity = identity
        self.echo = echo
        self.transport: Transport | None = None
        #: Channels this connection is attached to, and channels where it has presence members.
        self.channels: set[str] = set()
        self.presence_channels: set[str] = set()
        #: Pending timers (discard, presence grace) keyed by purpose.
        self.timers: dict[str, asyncio.TimerHandle] = {}
        #: Called when a revocation covers this connection's token (set by the live session).
        self.on_revoked: Callable[[int], None] | None = None

    def __repr__(self) -> str:
        return f"Connection(id={self.id!r}, key_name={self.grant.key_name!r}, client_id={self.identity.client_id!r})"

    @property
    def live(self) -> bool:
        return self.transport is not None and not self.transport.closing

    def deliver(self, frame: Frame) -> None:
        if self.transport is not None:
            self.transport.send(frame)

    def cancel_timer(self, purpose: str) -> None:
        handle = self.timers.pop(purpose, None)
        if handle is not None:
            handle.cancel()

    def cancel_timers(self) -> None:
        for purpose in list(self.timers):
            self.cancel_timer(purpose)


class ConnectionRegistry:
    """Every connection, live or resumable; at most ``max_connections``."""

    def __init__(self, limits: SandboxLimits) -> None:
        self._limits = limits
        self._connections: dict[str, Connection] = {}

    def __len__(self) -> int:
        return len(self._connections)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._connections.values()))

    def create(self, grant: Grant, identity: Identity, *, echo: bool) -> Connection:
        """:raises LimitError: 40150 when ``max_connections`` connections are live."""
        if len(self._connections) >= self._limits.max_connections:
            raise LimitError(
                f"the sandbox holds the maximum of {self._limits.max_connections} connections", code=40150, status=401
            )
        connection_id = secrets.token_hex(5)
        while connection_id in self._connections:
            connection_id = secrets.token_hex(5)
        connection = self._connections[connection_id] = Connection(connection_id, grant, identity, echo=echo)
        return connection

    def oldest_resumable(self) -> Connection | None:
        return next((c for c in self._connections.values() if c.transport is None), None)

    def find(self, connection_key: str) -> Connection | None:
        """The connection whose ``connectionKey`` this is (constant-time on the secret part)."""
        connection = self._connections.get(connection_key.partition("!")[0])
        if connection is None or not hmac.compare_digest(connection.key.encode(), connection_key.encode()):
            return None
        return connection

    def remove(self, connection: Connection) -> None:
        if self._connections.get(connection.id) is connection:
            del self._connections[connection.id]
