"""The realtime endpoint: one :class:`Session` per WebSocket, speaking the Ably protocol (spec 6).

The session authenticates, sends CONNECTED, then reads and dispatches frames until the socket goes,
the transport is closed (token expiry or revocation, see :mod:`.lifetime`; a client that does not
read, see :class:`~.connections.Transport`) or a frame cannot be handled. Nothing a client sends
ends the session silently: an unexpected exception is logged (its type and where, never the frame)
and answered with ERROR 50000 before the socket is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from starlette.websockets import WebSocket

from authserver.errors import AuthServerError, BadRequestError, NotAuthenticatedError, TokenError
from authserver.sandbox import frames, handshake
from authserver.sandbox.connections import Connection, Transport
from authserver.sandbox.grants import identity_after_reauth, resolve_identity
from authserver.sandbox.hub import Sandbox
from authserver.sandbox.lifetime import TokenWatch
from authserver.sandbox.payloads import is_wire_text
from authserver.sandbox.protocol import Action, Frame, WireFormat, decode_frame, error_frame

log = logging.getLogger("authserver.sandbox")

INTERNAL = AuthServerError("Internal error in the sandbox; the connection is closed")
#: How long a closing transport may take to flush what is queued before it is cut off.
FLUSH_TIMEOUT = 2.0


def _where(exc: BaseException) -> str:
    """``file:line`` where ``exc`` was raised: enough to find the bug, nothing of the request."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else "?"


async def realtime_endpoint(websocket: WebSocket) -> None:
    sandbox: Sandbox = websocket.app.state.sandbox
    await Session(sandbox, websocket).run()


class Session:
    """One WebSocket: authenticate, send CONNECTED, then dispatch frames until the socket goes."""

    def __init__(self, sandbox: Sandbox, websocket: WebSocket) -> None:
        self.sandbox = sandbox
        self.limits = sandbox.limits
        self.websocket = websocket
        params = websocket.query_params
        self.params: Mapping[str, str] = params
        self.wire_format: WireFormat = "msgpack" if params.get("format") == "msgpack" else "json"
        self.connection: Connection | None = None
        self.transport: Transport | None = None
        self.closed_by_client = False
        self._watch: TokenWatch | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    async def run(self) -> None:
        await self.websocket.accept()
        transport = self.transport = Transport(
            self.websocket,
            self.wire_format,
            max_queue=self.limits.max_outbound_queue,
            max_bytes=self.limits.max_outbound_bytes,
            send_timeout=self.limits.max_idle_interval_ms / 1000,
        )
        writer = asyncio.create_task(transport.run_writer())
        tasks: list[asyncio.Task[Any]] = []
        try:
            self.connection = self._connect(transport)
            if self.connection is not None:
                self._watch = TokenWatch(
                    self.connection,
                    transport,
                    now_ms=self.sandbox.now_ms,
                    revocations=self.sandbox.revocations,
                    auth_prompts=self.limits.auth_prompts,
                    auth_lead_ms=self.limits.auth_lead_ms,
                    short_token_prompts=self.limits.short_token_prompts,
                )
                self.connection.on_revoked = self._watch.revoked
                self._watch.restart()
                reader = asyncio.create_task(self._read(transport))
                closed = asyncio.create_task(transport.closed.wait())
                tasks = [asyncio.create_task(self._heartbeats(transport)), reader, closed]
                # Whichever ends first ends the session: the client went (reader), the socket failed or
                # stalled (writer), or the sandbox closed the transport (expiry, revocation, overflow).
                await asyncio.wait([reader, writer, closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            transport.close()
            for task in tasks:
                task.cancel()
            if self._watch is not None:
                self._watch.stop()
            await self._finish(writer)
            self._release()

    async def _finish(self, writer: asyncio.Task[None]) -> None:
        """Let the writer flush for a moment, then cut it off (a client that does not read never drains)."""
        done, _ = await asyncio.wait([writer], timeout=min(FLUSH_TIMEOUT, self.limits.max_idle_interval_ms / 1000))
        if not done:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    def _release(self) -> None:
        connection = self.connection
        if connection is None or connection.transport is not self.transport:
            return  # never connected, or a newer transport has taken the connection over
        connection.on_revoked = None
        if self.closed_by_client:
            self.sandbox.discard(connection)
        else:
            self.sandbox.transport_lost(connection)

    def _connect(self, transport: Transport) -> Connection | None:
        try:
            grant = handshake.credentials(self.sandbox, self.params)
            requested_client_id = self.params.get("clientId") or None
            identity = resolve_identity(grant, requested_client_id)
            connection, resume_error = handshake.resume_or_open(self.sandbox, self.params, grant, identity)
        except AuthServerError as exc:
            log.info("connection refused: %s (%d)", exc.message, exc.code)
            transport.close(error_frame(Action.ERROR, exc))
            return None
        except Exception as exc:
            log.error("connection refused after an unexpected %s at %s", type(exc).__name__, _where(exc))
            transport.close(error_frame(Action.ERROR, INTERNAL))
            return None
        previous = connection.transport
        connection.transport = transport
        connection.cancel_timers()
        self.sandbox.attachments.pause(connection)
        if previous is not None:
            previous.close(
                error_frame(Action.DISCONNECTED, BadRequestError("Connection superseded", code=80016, status=410))
            )
        transport.send(handshake.connected_frame(connection, self.limits, resume_error))
        return connection

    async def _heartbeats(self, transport: Transport) -> None:
        """Send HEARTBEAT whenever the sandbox has been silent for half the idle interval."""
        half = self.limits.max_idle_interval_ms / 2000
        loop = asyncio.get_running_loop()
        while not transport.closing:
            await asyncio.sleep(half)
            if loop.time() - transport.last_sent >= half:
                transport.send({"action": int(Action.HEARTBEAT)})

    # -- inbound frames -----------------------------------------------------------------------------

    async def _read(self, transport: Transport) -> None:
        try:
            while not transport.closing:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                raw: str | bytes | None = message.get("text")
                if raw is None:
                    raw = message.get("bytes")
                if raw is None:
                    continue
                if len(raw) > self.limits.max_frame_size:
                    error = BadRequestError("Maximum frame size exceeded", code=40009, status=413)
                    transport.close(error_frame(Action.ERROR, error))
                    return
                try:
                    frame = decode_frame(raw)
                except AuthServerError as exc:
                    transport.close(error_frame(Action.ERROR, exc))
                    return
                self._dispatch(frame)
        except Exception as exc:
            connection_id = self.connection.id if self.connection is not None else "?"
            log.error("connection %s: unexpected %s at %s", connection_id, type(exc).__name__, _where(exc))
            transport.close(error_frame(Action.ERROR, INTERNAL))

    def _dispatch(self, frame: Frame) -> None:
        assert self.connection is not None
        action = frame["action"]
        log.debug("connection %s: received action %s", self.connection.id, action)
        handler = DISPATCH.get(action)
        if handler is not None:
            handler(self, frame)
        elif frame.get("msgSerial") is not None:
            self._acknowledged(frame, self._unsupported)

    def _heartbeat(self, frame: Frame) -> None:
        assert self.transport is not None
        if is_wire_text(frame.get("id")):
            self.transport.send({"action": int(Action.HEARTBEAT), "id": frame["id"]})

    def _close(self, frame: Frame) -> None:
        assert self.connection is not None and self.transport is not None
        self.closed_by_client = True
        self.transport.close({"action": int(Action.CLOSED), "connectionId": self.connection.id})

    def _disconnect(self, frame: Frame) -> None:
        assert self.transport is not None
        self.transport.close()

    def _channel_frame(self, frame: Frame, answer: Callable[[Sandbox, Connection, Frame], list[Frame]]) -> None:
        assert self.connection is not None
        self._send_all(answer(self.sandbox, self.connection, frame))

    def _message_frame(self, frame: Frame) -> None:
        self._acknowledged(frame, self._publish)

    def _presence_frame(self, frame: Frame) -> None:
        self._acknowledged(frame, self._presence)

    def _send_all(self, frames: list[Frame]) -> None:
        assert self.transport is not None
        for frame in frames:
            self.transport.send(frame)

    def _acknowledged(self, frame: Frame, handler: Callable[[Frame, int], None]) -> None:
        """Run a MESSAGE/PRESENCE handler and ACK or NACK its ``msgSerial`` (count 1, always present)."""
        assert self.transport is not None
        serial = frame.get("msgSerial")
        if not isinstance(serial, int) or isinstance(serial, bool):
            self.transport.close(
                error_frame(Action.ERROR, BadRequestError("protocol message needs an integer msgSerial"))
            )
            return
        try:
            handler(frame, serial)
        except AuthServerError as exc:
            log.info("nack msgSerial %d: %s (%d)", serial, exc.message, exc.code)
            self.transport.send(error_frame(Action.NACK, exc, msgSerial=serial, count=1))

    def _publish(self, frame: Frame, serial: int) -> None:
        assert self.connection is not None and self.transport is not None
        name = frame.get("channel")
        if not isinstance(name, str):
            raise BadRequestError("MESSAGE without a channel")
        self.sandbox.attachments.authorise(self.connection, name, "publish")
        publication = self.sandbox.prepare_publish(
            name,
            frame.get("messages"),
            grant=self.connection.grant,
            identity=self.connection.identity,
            origin=self.connection.id,
            id_base=f"{self.connection.id}:{serial}",
        )
        self.sandbox.attachments.admit_publish(
            self.connection, name, len(publication.messages), now_ms=self.sandbox.now_ms()
        )
        serials = publication.serials()
        # The sender's own echo goes out before its ACK, as on Ably (ably-spec 8.5).
        self.sandbox.commit_publish(publication)
        self.transport.send({"action": int(Action.ACK), "msgSerial": serial, "count": 1, "res": [{"serials": serials}]})

    def _presence(self, frame: Frame, serial: int) -> None:
        assert self.connection is not None and self.transport is not None
        name = frame.get("channel")
        if not isinstance(name, str):
            raise BadRequestError("PRESENCE without a channel")
        self.sandbox.attachments.authorise(self.connection, name, "presence")
        events = self.sandbox.apply_presence(self.connection, name, frame.get("presence"), msg_serial=serial)
        # The echo first, then the ACK: presence.get() right after enter() resolves sees the member (RTP8).
        self.sandbox.broadcast_presence(name, events, frame_id=f"{self.connection.id}:{serial}")
        self.transport.send({"action": int(Action.ACK), "msgSerial": serial, "count": 1})

    def _unsupported(self, frame: Frame, serial: int) -> None:
        raise BadRequestError(f"protocol action {frame['action']} is not supported by the sandbox")

    def _reauth(self, frame: Frame) -> None:
        """In-band AUTH: swap credentials on the live connection and answer CONNECTED (RTC8)."""
        assert self.connection is not None and self.transport is not None
        connection = self.connection
        auth = frame.get("auth")
        token = auth.get("accessToken") if isinstance(auth, dict) else None
        try:
            if not isinstance(token, str) or not token:
                raise NotAuthenticatedError("AUTH without an accessToken")
            grant = self.sandbox.judge.judge(token, now_ms=self.sandbox.now_ms())
            if grant.app_id != connection.grant.app_id:
                raise TokenError("Invalid credentials for this connection's app", code=40102, status=401)
            identity = identity_after_reauth(connection.identity, grant)
        except AuthServerError as exc:
            log.info("connection %s: AUTH refused: %s (%d)", connection.id, exc.message, exc.code)
            self.transport.close(error_frame(Action.ERROR, exc))
            return
        connection.grant, connection.identity = grant, identity
        log.info("connection %s re-authenticated (key %s)", connection.id, grant.key_name)
        self._send_all(frames.reauthorised(self.sandbox, connection))
        self.transport.send(handshake.connected_frame(connection, self.limits))
        assert self._watch is not None
        self._watch.restart()


#: The one table of what a frame from the client does, by action (the rest: NACK if it asks for an ACK,
#: else ignored). HEARTBEAT echoes its id; CLOSE answers CLOSED; DISCONNECT just closes.
DISPATCH: dict[int, Callable[[Session, Frame], None]] = {
    Action.HEARTBEAT: Session._heartbeat,
    Action.CLOSE: Session._close,
    Action.DISCONNECT: Session._disconnect,
    Action.ATTACH: lambda session, frame: session._channel_frame(frame, frames.attach),
    Action.DETACH: lambda session, frame: session._channel_frame(frame, frames.detach),
    Action.MESSAGE: Session._message_frame,
    Action.PRESENCE: Session._presence_frame,
    Action.AUTH: Session._reauth,
    Action.SYNC: lambda session, frame: session._channel_frame(frame, frames.presence_sync),
}
