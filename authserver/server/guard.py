"""Connection limits at the socket, below the app: what uvicorn does not do by itself.

uvicorn (0.54, httptools protocol) gives us a keep-alive timeout (``timeout_keep_alive``: an idle
connection *between* requests is closed) and nothing else that holds against slow or idle clients:

- no header-read timeout: a connection that never sends a byte, or sends half a request line and
  stops, is kept for ever;
- no body-read timeout: a request whose body never finishes keeps its task waiting for ever;
- no cap on open connections: ``limit_concurrency`` answers *requests* with 503 once N connections
  are open, so 1,000 idle sockets make ``/healthz`` fail instead of protecting it, and past the
  descriptor limit libuv accepts and drops new connections (its EMFILE trick) unanswered;
- no limit on header size with httptools (``h11_max_incomplete_event_size`` exists for h11 only);
- no admission control that spares the probes: past ``limit_concurrency`` every request, ``/healthz``
  included, gets a plain-text 503.

:func:`guarded_protocol` subclasses uvicorn's httptools protocol to add all five. One
:class:`ConnectionGuard` per server process keeps its open connections in arrival order; when a new
connection would exceed the cap, the *oldest connection that is not running a request* (idle, or
still sending its headers) is closed to make room, so a flood of idle sockets cannot keep a real
client (or the health check) out, and the process stays under its descriptor limit.

**Admission control.** A token request (:data:`SHED_PATHS`) is answered 503 (Ably's 50300,
``Retry-After: 1``) by the protocol itself, the moment its headers are read (no task, no session
lookup, no signing; the connection goes on), when this process has

- as many requests *queued* as its :class:`AdmissionLimit` allows (:attr:`ConnectionGuard.queued`:
  admitted, their handler's task created and not yet started: the event loop's ready queue of
  handlers), or
- ``max_in_flight`` requests *in flight* (:attr:`ConnectionGuard.running`: the whole request in, the
  answer's last byte not yet written or the client gone; queued, running, or awaiting a database or
  an identity provider), a ceiling on what the process holds whatever it waits for.

The limit on the queue adapts: every handler reports, as it starts, how long it waited since its
request was ready (its *queue delay*); past ``max_queue_delay`` the limit is cut, within it the
limit grows, between :data:`MIN_LIMIT` and ``max_in_flight``. A handler that awaits something has
left the queue, so a process whose requests wait on something else (logins queued for a password
check, a slow database) still admits token requests, and one whose loop is behind (a storm of
token requests: CPU) sheds. With ``max_queue_delay`` 0 the limit is ``max_in_flight`` on the
requests in flight, as before the queue was measured.

A request still receiving its body is not in flight (the body timeout bounds it, and clients that
never finish their bodies must not fill the ceiling); it is queued only until its handler starts,
which then waits for the body. Nor is an idle or half-sent connection counted (the header timeout
and the connection cap bound those). The app's edge could not count
this: ``GET /auth`` answered from memory runs start to end without yielding, so a count kept there
stays near 1 while hundreds of requests wait in the event loop's ready queue. Probes and every other
path are never refused, and a request once admitted runs to its end. What it costs a request: two
clock reads, two compares, and one more coroutine frame around the app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import resource
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from authserver.config import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_QUEUE_DELAY_MS
from authserver.errors import OverloadedError
from authserver.http.responses import NO_CACHE, error_body, error_headers
from authserver.infra.drops import dropped, shed

log = logging.getLogger("authserver.connections")
monotonic = time.monotonic

#: Descriptors kept free of connections: the database, log files, the listening sockets (32: see
#: :func:`authserver.server.serving.acceptors`), and the connections one accept burst can bring in
#: before the oldest idle ones are closed.
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
    #: The most requests in flight (whole request in, answer not yet sent) before a token request gets
    #: 503; 0: admission control off.
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    #: Seconds a ready request may wait for the event loop before the admission limit shrinks; 0: the
    #: limit stays at ``max_in_flight``.
    max_queue_delay: float = DEFAULT_MAX_QUEUE_DELAY_MS / 1000

    def connection_cap(self) -> int:
        if self.max_connections:
            return self.max_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return AUTO_MAX_CONNECTIONS
        return max(16, min(AUTO_MAX_CONNECTIONS, soft - DESCRIPTOR_RESERVE))


def _error_response(
    status: int, reason: str, message: str, *, code: int = 40000, close: bool = True, extra: tuple[str, ...] = ()
) -> bytes:
    """A complete HTTP/1.1 error answer written at the socket: Ably-shaped, no-cache, closing unless
    ``close`` is false; ``extra``: more header lines."""
    body = json.dumps(error_body(code, status, message), separators=(",", ":")).encode()
    head = [
        f"HTTP/1.1 {status} {reason}".encode(),
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        *([b"connection: close"] if close else []),
        *(f"{name.lower()}: {value}".encode() for name, value in error_headers(code, message).items()),
        *(f"{name.lower()}: {value}".encode() for name, value in NO_CACHE.items()),
        *(line.encode() for line in extra),
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _overloaded_response() -> bytes:
    error = OverloadedError("too many requests in flight: try again shortly")
    extra = (f"retry-after: {error.retry_after}", "vary: Origin")
    return _error_response(503, "Service Unavailable", error.message, code=error.code, close=False, extra=extra)


TOO_LARGE = _error_response(431, "Request Header Fields Too Large", "request headers too large")
MALFORMED = _error_response(400, "Bad Request", "invalid HTTP request")
#: The answer to a token request past the admission limit; the connection stays open for the next request.
OVERLOADED = _overloaded_response()
#: What admission control may refuse: the token requests (never the probes, metrics, page or login).
SHED_PATHS = frozenset({b"/auth", b"/token"})


#: The admission limit never goes below this (nor above ``max_in_flight``), and starts here.
MIN_LIMIT = 8
START_LIMIT = 32
#: What one cut keeps of the limit.
CUT = 0.8
#: The ready-queue key under which a request's scope carries when it became ready (monotonic seconds).
READY_AT = "authserver.ready_at"


class AdmissionLimit:
    """How many requests this process lets queue for its event loop, adapted to their queue delay.

    Additive increase, multiplicative decrease, as TCP adapts its window. A request whose handler
    started within ``max_queue_delay`` of being ready raises the limit by ``1 / limit`` (about one
    per limit's worth of requests); one that waited longer cuts it to :data:`CUT` of itself, once
    per window: only if it became ready after the last cut (the requests of one slow turn of the loop
    are one signal, not hundreds). A calm process drifts up to the ceiling; a storm then cuts it
    once per turn of the loop, 512 to 55 in ten turns. (Growing only while the queue was near the
    limit, tried, kept the limit low after a storm for seconds, refusing requests at half load.)
    Times are seconds on one monotonic clock, passed in.
    """

    __slots__ = ("_last_cut", "ceiling", "floor", "target", "value")

    def __init__(self, ceiling: int, target: float) -> None:
        """``ceiling`` 0: no limit at all (admission control off); ``target`` 0: a fixed ``ceiling``."""
        self.ceiling = float(ceiling or math.inf)
        self.floor = min(float(MIN_LIMIT), self.ceiling)
        self.target = target if ceiling else 0.0
        #: Requests admitted at once now; a fixed ``ceiling`` without a target.
        self.value = min(float(START_LIMIT), self.ceiling) if self.target else self.ceiling
        self._last_cut = -math.inf

    def observe(self, delay: float, now: float) -> None:
        """A handler started at ``now``, ``delay`` seconds after its request was ready."""
        if not self.target:
            return
        if delay <= self.target:
            if self.value < self.ceiling:
                self.value = min(self.ceiling, self.value + 1.0 / self.value)
        elif now - delay >= self._last_cut:
            self._last_cut = now
            self.value = max(self.floor, self.value * CUT)


#: This process's guard for each uvicorn config (a worker builds its own: nothing crosses processes).
_guards: dict[int, ConnectionGuard] = {}


def limit_connections(config: uvicorn.Config, limits: ConnectionLimits) -> None:
    """Make ``config`` serve with :class:`GuardedProtocol` under ``limits``. Picklable (by name), so
    uvicorn's worker processes get it too, each with a guard of its own."""
    # NOTE: uvicorn's limit_concurrency would answer past it with an app of its own, around the app
    # that tells the admission limit each handler's start: the queued count would never come down.
    assert config.limit_concurrency is None, "limit_concurrency and the connection guard do not mix"
    config.http = f"{__name__}:GuardedProtocol"
    config.authserver_connection_limits = limits  # type: ignore[attr-defined]


class ConnectionGuard:
    """The open connections of one server process, oldest first, and what happens to them."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.cap = limits.connection_cap()
        self.open: dict[GuardedProtocol, None] = {}  # insertion-ordered: oldest first
        #: Requests of this process in flight: whole request in, answer not complete.
        self.running = 0
        #: Admitted requests whose handler has not started yet (measured when ``max_queue_delay`` is set).
        self.queued = 0
        #: How many may queue (a fixed limit on ``running`` without ``max_queue_delay``).
        self.limit = AdmissionLimit(limits.max_in_flight, limits.max_queue_delay)
        #: Token requests are shed once this many are in flight, however few are queued.
        self.ceiling = limits.max_in_flight or math.inf
        self._timed_apps: dict[int, Any] = {}

    @classmethod
    def of(cls, config: uvicorn.Config) -> ConnectionGuard:
        guard = _guards.get(id(config))
        if guard is None:
            limits = getattr(config, "authserver_connection_limits", None) or ConnectionLimits()
            guard = _guards[id(config)] = cls(limits)
        return guard

    def timed(self, app: Any) -> Any:
        """``app`` with each handler's start told to the admission limit: how long it waited since its
        request was ready (the scope's :data:`READY_AT`), and one request fewer queued. One wrapper per
        guard and app (not a bound method per connection, which would tie each connection in a
        reference cycle)."""
        wrapped = self._timed_apps.get(id(app))
        if wrapped is not None:
            return wrapped
        limit = self.limit

        async def timed_app(scope: Any, receive: Any, send: Any) -> None:
            ready = scope.pop(READY_AT, None)
            if ready is not None:
                now = monotonic()
                limit.observe(now - ready, now)
                self.queued -= 1
            await app(scope, receive, send)

        self._timed_apps[id(app)] = timed_app
        return timed_app

    def on_drop(self, reason: str) -> None:
        dropped(reason)

    def on_shed(self, path: str) -> None:
        shed(path)

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


def _routed_path(target: bytes) -> bytes:
    """The path the app will route ``target`` to, as uvicorn derives it (absolute-form and %-escapes
    undone): ``GET /%61uth`` or ``GET http://host/auth`` is a token request too."""
    if target.startswith(b"/") and b"%" not in target:
        return target.partition(b"?")[0]
    try:
        path = httptools.parse_url(target).path or b"/"
    except httptools.HttpParserInvalidURLError:
        return b""
    return unquote_to_bytes(path) if b"%" in path else path


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout, a body timeout, a header size limit and a
    place in this process's :class:`ConnectionGuard` (see :func:`limit_connections`)."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.guard = ConnectionGuard.of(config)
        self._limit = self.guard.limit
        self._measured = bool(self._limit.target)  # the queue is counted and timed
        if self._measured:
            self.app = self.guard.timed(self.app)  # every handler of this connection starts through it

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0  # bytes received while the headers were not complete
        self._awaiting_headers = True
        self._body_pending = False  # headers in, body not yet complete
        self._refused = False
        self._shedding = False  # a request answered 503 by admission control, its body still to come
        self._started = False  # the request being parsed has a response cycle (not shed, not an upgrade)
        self._running = 0  # this connection's requests counted in the guard's ``running``
        self._arm(self.guard.limits.header_timeout, "header_timeout")
        self.guard.admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.forget(self)
        self.guard.running -= self._running  # nobody is waiting for these answers any more
        self._running = 0
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
            if self._awaiting_headers and self._header_bytes:  # the first bytes of a request on a kept-alive connection
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
        if self.timeout_keep_alive_task is not None:  # a request right behind a shed one, in the same read
            self._unset_keepalive_if_required()
            self._arm(self.guard.limits.header_timeout, "header_timeout")

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        # All of it may have come in one read: measured from what was parsed (once per request, not a
        # call per header: a storm's shed requests pay for every line here).
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.guard.limits.max_header_bytes:
            self._refused = True
            return
        self._disarm()  # the header timeout; a body still to come is timed when this read ends
        self._body_pending = True
        guard = self.guard
        if (
            guard.running >= guard.ceiling or (guard.queued if self._measured else guard.running) >= self._limit.value
        ) and self._shed():
            return
        previous = self.cycle
        super().on_headers_complete()
        self._started = self.cycle is not previous
        # Its handler's task is in the loop's ready queue from now (a request pipelined behind another
        # waits for that one's answer, not for the loop: it is neither queued nor timed).
        if self._measured and self._started and not self.pipeline:
            self.cycle.scope[READY_AT] = monotonic()  # type: ignore[literal-required]
            guard.queued += 1
        # The cycle's task has not run yet: it writes through this from its first message on. NOTE: a
        # websocket upgrade starts no cycle (``self.cycle`` is still the last request's, or None).
        if self.cycle is not previous:
            self.cycle.transport = HeadWithBody(self.transport, self.cycle)  # type: ignore[assignment]

    def _shed(self) -> bool:
        """Answer this request 503 at once if it is a token request, and say whether it was."""
        path = _routed_path(self.url)
        if path not in SHED_PATHS or self.parser.get_method() not in (b"GET", b"POST"):
            return False
        if self.parser.should_upgrade() or (self.cycle is not None and not self.cycle.response_complete):
            return False  # an upgrade, or pipelined behind a running request: its answer must wait its turn
        self._shedding = True
        self.guard.on_shed(path.decode("ascii"))
        self.transport.write(OVERLOADED)
        return True

    def _shed_complete(self) -> None:
        """The shed request's body is in (and dropped): the connection takes its next request."""
        self._shedding = False
        self._awaiting_headers = True
        self._header_bytes = 0
        if not self.parser.should_keep_alive():
            self.transport.close()
            return
        # Idle from here, as after any answer: uvicorn's keep-alive timeout (not the header timeout,
        # which data_received arms only once bytes of a next request came: _header_bytes).
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def on_body(self, body: bytes) -> None:
        if not self._refused and not self._shedding:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()  # the body is in: the app's own pace from here
        self._body_pending = False
        if self._shedding:
            self._shed_complete()
            return
        super().on_message_complete()
        # In flight from here (ready to run, or running) until its answer is complete. An answer that
        # came before the body was all in (the app did not wait for it) has already ended it.
        if self._started and not self.cycle.response_complete:
            self._running += 1
            self.guard.running += 1
        self._started = False

    def on_response_complete(self) -> None:
        # Answers complete in the order of the requests; one counted before the answer began is this one.
        if self._running:
            self._running -= 1
            self.guard.running -= 1
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
