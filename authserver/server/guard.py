"""Connection limits at the socket, below the app: what uvicorn does not do by itself.

uvicorn (0.54, httptools protocol) gives us a keep-alive timeout (``timeout_keep_alive``: an idle
connection *between* requests is closed) and nothing else that holds against slow or idle clients:

- no header-read timeout: a connection that never sends a byte, or sends half a request line and
  stops, is kept for ever;
- no body-read timeout: a request whose body never finishes keeps its task waiting for ever;
- no cap on open connections: ``limit_concurrency`` answers *requests* with 503 once N connections
  are open, so 1,000 idle sockets make ``/healthz`` fail instead of protecting it, and past the
  descriptor limit libuv accepts and drops new connections (its EMFILE trick) unanswered;
- no limit on header size with httptools (``h11_max_incomplete_event_size`` exists for h11 only).

:func:`guarded_protocol` subclasses uvicorn's httptools protocol to add all four. One
:class:`ConnectionGuard` per server process keeps its open connections in arrival order; when a new
connection would exceed the cap, the *oldest connection that is not running a request* (idle, or
still sending its headers) is closed to make room, so a flood of idle sockets cannot keep a real
client (or the health check) out, and the process stays under its descriptor limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from authserver.http.responses import NO_CACHE, error_body
from authserver.infra.drops import dropped

log = logging.getLogger("authserver.connections")

#: Descriptors kept free of connections: the database, log files, the listening socket, and the
#: connections one accept burst can bring in before the oldest idle ones are closed.
DESCRIPTOR_RESERVE = 128
#: The most connections ``max_connections=0`` (automatic) allows, whatever the descriptor limit.
AUTO_MAX_CONNECTIONS = 10_000


@dataclass(frozen=True)
class ConnectionLimits:
    #: Seconds a connection has to send a complete request line and headers, from when it opens or
    #: from the first byte of its next request.
    header_timeout: float = 10.0
    #: Seconds a request has to send its whole body, once its headers are in.
    body_timeout: float = 10.0
    #: Open connections per process; 0: the descriptor limit less :data:`DESCRIPTOR_RESERVE`.
    max_connections: int = 0
    #: Request line plus headers, in bytes; larger requests get 431 and are closed.
    max_header_bytes: int = 16 * 1024

    def connection_cap(self) -> int:
        if self.max_connections:
            return self.max_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return AUTO_MAX_CONNECTIONS
        return max(16, min(AUTO_MAX_CONNECTIONS, soft - DESCRIPTOR_RESERVE))


def _error_response(status: int, reason: str, message: str) -> bytes:
    """A complete HTTP/1.1 error answer written at the socket: Ably-shaped, no-cache, closing."""
    body = json.dumps(error_body(40000, status, message), separators=(",", ":")).encode()
    head = [
        f"HTTP/1.1 {status} {reason}".encode(),
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
        b"x-ably-errorcode: 40000",
        *(f"{name.lower()}: {value}".encode() for name, value in NO_CACHE.items()),
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


TOO_LARGE = _error_response(431, "Request Header Fields Too Large", "request headers too large")
MALFORMED = _error_response(400, "Bad Request", "invalid HTTP request")


#: This process's guard for each uvicorn config (a worker builds its own: nothing crosses processes).
_guards: dict[int, ConnectionGuard] = {}


def limit_connections(config: uvicorn.Config, limits: ConnectionLimits) -> None:
    """Make ``config`` serve with :class:`GuardedProtocol` under ``limits``. Picklable (by name), so
    uvicorn's worker processes get it too, each with a guard of its own."""
    config.http = f"{__name__}:GuardedProtocol"
    config.authserver_connection_limits = limits  # type: ignore[attr-defined]


class ConnectionGuard:
    """The open connections of one server process, oldest first, and what happens to them."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.cap = limits.connection_cap()
        self.open: dict[GuardedProtocol, None] = {}  # insertion-ordered: oldest first

    @classmethod
    def of(cls, config: uvicorn.Config) -> ConnectionGuard:
        guard = _guards.get(id(config))
        if guard is None:
            limits = getattr(config, "authserver_connection_limits", None) or ConnectionLimits()
            guard = _guards[id(config)] = cls(limits)
        return guard

    def on_drop(self, reason: str) -> None:
        dropped(reason)

    def admit(self, conn: GuardedProtocol) -> None:
        self.open[conn] = None
        if len(self.open) <= self.cap:
            return
        for other in self.open:
            if other is not conn and not other.busy():
                other.drop("evicted")
                return
        conn.drop("evicted")  # every other connection is running a request

    def forget(self, conn: GuardedProtocol) -> None:
        self.open.pop(conn, None)


class HeadWithBody:
    """The transport as one response cycle sees it: the status line and headers of a response that
    has a body are held and go out with the body's first write, one ``send`` system call instead of
    two (uvicorn writes them separately; the first of the two cost as much as the whole app's middleware).

    Only the cycle's first write after its response started is held, and only when a body write
    must follow (not for HEAD, nor for an empty body). ``close`` sends what is held first.
    """

    __slots__ = ("_cycle", "_held", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        self._transport = transport
        self._cycle: RequestResponseCycle | None = cycle
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
            return
        cycle = self._cycle
        if cycle is not None and cycle.response_started:
            # The head: the first write once the response started. NOTE: the cycle refers to this
            # object; forgetting it now lets both be freed by reference counting, not by the collector.
            self._cycle = None
            if cycle.scope["method"] != "HEAD" and (cycle.chunked_encoding or cycle.expected_content_length > 0):
                self._held = data
                return
        self._transport.write(data)

    def close(self) -> None:
        if self._held is not None:
            self._transport.write(self._held)
            self._held = None
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout, a body timeout, a header size limit and a
    place in this process's :class:`ConnectionGuard` (see :func:`limit_connections`)."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.guard = ConnectionGuard.of(config)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0  # bytes received while the headers were not complete
        self._header_size = 0  # request line and headers as parsed
        self._awaiting_headers = True
        self._body_pending = False  # headers in, body not yet complete
        self._refused = False
        self._arm(self.guard.limits.header_timeout, "header_timeout")
        self.guard.admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.forget(self)
        super().connection_lost(exc)

    def busy(self) -> bool:
        """A request is running (its headers are in and its response is not complete)."""
        return self.cycle is not None and not self.cycle.response_complete

    def drop(self, reason: str) -> None:
        self._disarm()
        self.guard.forget(self)
        if not self.transport.is_closing():
            self.guard.on_drop(reason)
            self.transport.abort() if reason == "evicted" else self.transport.close()

    def _arm(self, seconds: float, reason: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self.drop, reason)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._awaiting_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        # Still waiting for the end of the headers: every byte received so far is header.
        if self._refused or (self._awaiting_headers and self._header_bytes > self.guard.limits.max_header_bytes):
            self._refuse()
            return
        # Time what this read left unfinished; a request that arrived whole (the usual GET on a
        # kept-alive connection) needs no timer at all.
        if self._timer is None:
            if self._awaiting_headers:  # the first bytes of a request on a kept-alive connection
                self._arm(self.guard.limits.header_timeout, "header_timeout")
            elif self._body_pending:
                self._arm(self.guard.limits.body_timeout, "body_timeout")

    def _refuse(self) -> None:
        self._refused = True
        self._disarm()
        self.guard.forget(self)
        if not self.transport.is_closing():
            self.guard.on_drop("headers_too_large")
            self.transport.write(TOO_LARGE)
            if self.transport.can_write_eof():
                # NOTE: a close with the rest of the request unread would reset the connection and the
                # client might lose the 431; send FIN, drop what still comes for a second, then close.
                self.transport.write_eof()
                self._timer = self.loop.call_later(1.0, self.transport.close)
            else:
                self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_size = 0

    def on_url(self, url: bytes) -> None:
        self._header_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_size += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        if self._header_size > self.guard.limits.max_header_bytes:  # all of it came in one read
            self._refused = True
            return
        self._disarm()  # the header timeout; a body still to come is timed when this read ends
        self._body_pending = True
        previous = self.cycle
        super().on_headers_complete()
        # The cycle's task has not run yet: it writes through this from its first message on. NOTE: a
        # websocket upgrade starts no cycle (``self.cycle`` is still the last request's, or None).
        if self.cycle is not previous:
            self.cycle.transport = HeadWithBody(self.transport, self.cycle)  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()  # the body is in: the app's own pace from here
        self._body_pending = False
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._awaiting_headers = True
        self._header_bytes = 0
        super().on_response_complete()  # arms uvicorn's keep-alive timeout for the idle time

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it cannot parse, with the no-cache headers and Ably's shape."""
        self._disarm()
        self.transport.write(MALFORMED)
        self.transport.close()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        self.guard.forget(self)
        super().handle_websocket_upgrade()
