"""Realtime connections: the state that survives a dropped transport (for resume) and the transport.

A :class:`Connection` outlives its WebSocket: when the socket goes, the connection waits
``connection_state_ttl_ms`` for a ``resume`` before it is discarded. A :class:`Transport` is one
WebSocket with a bounded outbox drained by a single writer task, so frames leave in order and a
slow client cannot make the sandbox buffer without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from collections.abc import Callable, Iterator

from starlette.websockets import WebSocket

from authserver.errors import AuthServerError
from authserver.sandbox.grants import Actor, JudgedCredential
from authserver.sandbox.limits import LimitError, SandboxLimits
from authserver.sandbox.protocol import Action, Frame, Outbound, WireFormat, error_frame

log = logging.getLogger("authserver.sandbox")

#: Longest wait for the close frame to go out; a client that does not read will not take it anyway.
CLOSE_TIMEOUT = 1.0
NOT_READING = AuthServerError("Connection dropped: the client is not reading its frames", code=80003, status=503)


class Transport:
    """One WebSocket with a bounded outbox. ``send`` never blocks; frames are encoded when queued.

    A client that stops reading cannot hold the sandbox: when the outbox overflows (frames or bytes)
    the transport is closed with DISCONNECTED, and a single write blocked for ``send_timeout`` seconds
    ends the writer. ``closed`` is set as soon as closing starts, so the session stops reading too.
    """

    def __init__(
        self, websocket: WebSocket, wire_format: WireFormat, *, max_queue: int, max_bytes: int, send_timeout: float
    ) -> None:
        self.wire_format: WireFormat = wire_format
        self.closing = False
        self.closed = asyncio.Event()
        self.last_sent = asyncio.get_running_loop().time()
        self._websocket = websocket
        self._queue: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._queued_bytes = 0
        self._max_queue = max_queue
        self._max_bytes = max_bytes
        self._send_timeout = send_timeout

    def _encode(self, frame: Frame | Outbound) -> str | bytes | None:
        outbound = frame if isinstance(frame, Outbound) else Outbound(frame)
        try:
            return outbound.encoded(self.wire_format)
        except (ValueError, TypeError, OverflowError) as exc:  # ingress checks should make this unreachable
            log.error(
                "dropping an outbound frame that cannot be encoded as %s (%s)", self.wire_format, type(exc).__name__
            )
            return None

    def _put(self, data: str | bytes) -> None:
        self._queued_bytes += len(data)
        self._queue.put_nowait(data)

    def send(self, frame: Frame | Outbound) -> None:
        if self.closing:
            return
        data = self._encode(frame)
        if data is None:
            return
        if self._queue.qsize() >= self._max_queue or self._queued_bytes + len(data) > self._max_bytes:
            log.warning(
                "dropping a transport whose client is not reading (%d frames, %d bytes queued)",
                self._queue.qsize(),
                self._queued_bytes,
            )
            self.close(error_frame(Action.DISCONNECTED, NOT_READING))
            return
        self._put(data)

    def close(self, final: Frame | None = None) -> None:
        """Stop accepting frames; the writer sends what is queued (and ``final``), then closes the socket."""
        if self.closing:
            return
        data = self._encode(final) if final is not None else None
        if data is not None:
            self._put(data)
        self.closing = True
        self._queue.put_nowait(None)
        self.closed.set()

    async def run_writer(self) -> None:
        """Drain the outbox until ``close`` (or the socket fails, or a write stalls), then close the socket."""
        loop = asyncio.get_running_loop()
        try:
            while (data := await self._queue.get()) is not None:
                self._queued_bytes -= len(data)
                if isinstance(data, bytes):
                    await asyncio.wait_for(self._websocket.send_bytes(data), self._send_timeout)
                else:
                    await asyncio.wait_for(self._websocket.send_text(data), self._send_timeout)
                self.last_sent = loop.time()
        except TimeoutError:
            log.warning("dropping a transport whose client has not read for %.0f s", self._send_timeout)
        except Exception as exc:  # the peer went away mid-send: nothing more to deliver
            log.debug("transport write failed: %s", type(exc).__name__)
        finally:
            self.closing = True
            self.closed.set()
            # NOTE: bounded, because closing also has to write (a close frame) to a client that may not read.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._websocket.close(), CLOSE_TIMEOUT)


class Connection:
    """A realtime connection: credentials, identity, attachments and the current transport (if any)."""

    def __init__(
        self,
        connection_id: str,
        grant: JudgedCredential,
        identity: Actor,
        *,
        echo: bool,
        remain_present_ms: int | None = None,
    ) -> None:
        self.id = connection_id
        self.key = f"{connection_id}!{secrets.token_hex(6)}"
        self.grant = grant
        self.identity = identity
        self.echo = echo
        #: The ``remainPresentFor`` the client asked for: how long its members stay after a drop.
        self.remain_present_ms = remain_present_ms
        self.transport: Transport | None = None
        #: Channels where it has presence members (its attachments are kept by ``Attachments``).
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

    def deliver(self, frame: Frame | Outbound) -> None:
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

    @property
    def full(self) -> bool:
        return len(self._connections) >= self._limits.max_connections

    def create(
        self, grant: JudgedCredential, identity: Actor, *, echo: bool, remain_present_ms: int | None = None
    ) -> Connection:
        """:raises LimitError: 40150 when ``max_connections`` connections are held."""
        if self.full:
            raise LimitError(
                f"the sandbox holds the maximum of {self._limits.max_connections} connections", code=40150, status=401
            )
        connection_id = secrets.token_hex(5)
        while connection_id in self._connections:
            connection_id = secrets.token_hex(5)
        connection = self._connections[connection_id] = Connection(
            connection_id, grant, identity, echo=echo, remain_present_ms=remain_present_ms
        )
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
