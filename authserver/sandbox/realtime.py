"""The realtime endpoint: one :class:`Session` per WebSocket, speaking the Ably protocol (spec 6).

Token lifecycle (spec 6.8): ``min(auth_lead_ms, ttl / 2)`` before expiry the session sends AUTH; a
valid AUTH reply swaps the credentials on the live connection and is answered with CONNECTED; at
expiry without one the session sends DISCONNECTED 40142 and closes, keeping the connection for
resume. A revocation covering the token sends DISCONNECTED 40141 (or AUTH first, with a margin).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from starlette.websockets import WebSocket

from ..errors import AuthServerError, BadRequestError, NotAuthenticatedError, TokenError
from . import attachments
from .connections import Connection, Transport
from .grants import Grant, Identity, identity_after_reauth, resolve_identity
from .hub import Sandbox
from .protocol import (
    Action,
    Flag,
    Frame,
    WireFormat,
    decode_frame,
    error_frame,
    error_info,
)

log = logging.getLogger("authserver.sandbox")

EXPIRED = TokenError("Key/token status changed (token expired)", code=40142, status=401)
REVOKED = TokenError("Key/token status changed (token revoked)", code=40141, status=401)


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
        self._token_watch: asyncio.Task[None] | None = None
        self._revocation_watch: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    async def run(self) -> None:
        await self.websocket.accept()
        transport = self.transport = Transport(
            self.websocket, self.wire_format, max_queue=self.limits.max_outbound_queue
        )
        writer = asyncio.create_task(transport.run_writer())
        reader: asyncio.Task[None] | None = None
        heartbeats: asyncio.Task[None] | None = None
        try:
            self.connection = self._connect(transport)
            if self.connection is not None:
                heartbeats = asyncio.create_task(self._heartbeats(transport))
                self._watch_token()
                reader = asyncio.create_task(self._read(transport))
                await asyncio.wait([reader, writer], return_when=asyncio.FIRST_COMPLETED)
        finally:
            transport.close()
            for task in (reader, heartbeats, self._token_watch, self._revocation_watch):
                if task is not None:
                    task.cancel()
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(writer), timeout=5)
            writer.cancel()
            self._release()

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
            grant = self._credentials()
            requested_client_id = self.params.get("clientId") or None
            identity = resolve_identity(grant, requested_client_id)
            connection, resume_error = self._resume_or_open(grant, identity)
        except AuthServerError as exc:
            log.info("connection refused: %s (%d)", exc.message, exc.code)
            transport.close(error_frame(Action.ERROR, exc))
            return None
        previous = connection.transport
        connection.transport = transport
        connection.cancel_timers()
        self.sandbox.pause_attachments(connection)
        connection.on_revoked = self._on_revoked
        if previous is not None:
            previous.close(
                error_frame(Action.DISCONNECTED, BadRequestError("Connection superseded", code=80016, status=410))
            )
        transport.send(self._connected_frame(connection, resume_error))
        return connection

    def _credentials(self) -> Grant:
        token = self.params.get("access_token") or self.params.get("accessToken")
        now = self.sandbox.now_ms()
        if token:
            return self.sandbox.judge.judge(token, now_ms=now)
        key = self.params.get("key")
        if key:
            return self.sandbox.keyring.check_basic(key, now_ms=now)
        raise NotAuthenticatedError("No authentication information provided (access_token, accessToken or key)")

    def _resume_or_open(self, grant: Grant, identity: Identity) -> tuple[Connection, AuthServerError | None]:
        resume = self.params.get("resume")
        error: AuthServerError | None = None
        if resume and resume != "None":
            found = self.sandbox.connections.find(resume)
            if found is not None and found.grant.app_id == grant.app_id:
                if found.identity.identified and identity.client_id != found.identity.client_id:
                    raise TokenError("Mismatched clientId for existing connection", code=40102, status=401)
                found.grant, found.identity = grant, identity
                log.info("connection %s resumed", found.id)
                return found, None
            if "!" in resume:
                error = BadRequestError("Unable to recover connection (connection expired)", code=80008)
            else:
                error = BadRequestError("Unable to recover connection (invalid connection key)", code=80018)
        echo = self.params.get("echo") != "false"
        return self.sandbox.open_connection(grant, identity, echo=echo), error

    def _connected_frame(self, connection: Connection, error: AuthServerError | None = None) -> Frame:
        details: dict[str, Any] = {
            "connectionKey": connection.key,
            "maxMessageSize": self.limits.max_message_size,
            "maxInboundRate": 250,
            "maxFrameSize": self.limits.max_frame_size,
            "serverId": "authserver-sandbox",
            "connectionStateTtl": self.limits.connection_state_ttl_ms,
            "maxIdleInterval": self.limits.max_idle_interval_ms,
        }
        if connection.identity.client_id is not None:
            details["clientId"] = connection.identity.client_id
        frame: Frame = {
            "action": int(Action.CONNECTED),
            "connectionId": connection.id,
            "connectionKey": connection.key,
            "connectionDetails": details,
        }
        if error is not None:
            frame["error"] = error_info(error)
        return frame

    async def _heartbeats(self, transport: Transport) -> None:
        """Send HEARTBEAT whenever the sandbox has been silent for half the idle interval."""
        half = self.limits.max_idle_interval_ms / 2000
        loop = asyncio.get_running_loop()
        while not transport.closing:
            await asyncio.sleep(half)
            if loop.time() - transport.last_sent >= half:
                transport.send({"action": int(Action.HEARTBEAT)})

    # -- token lifecycle ----------------------------------------------------------------------------

    def _watch_token(self) -> None:
        if self._token_watch is not None:
            self._token_watch.cancel()
            self._token_watch = None
        assert self.connection is not None
        grant = self.connection.grant
        if grant.expires_ms is not None:
            self._token_watch = asyncio.create_task(self._token_timeline(grant.issued_ms, grant.expires_ms))

    async def _token_timeline(self, issued_ms: int, expires_ms: int) -> None:
        assert self.transport is not None and self.connection is not None
        if self.limits.auth_prompts:
            lead = min(self.limits.auth_lead_ms, (expires_ms - issued_ms) // 2)
            await self._sleep_until(expires_ms - lead)
            log.info("connection %s: token expires in %d ms, sending AUTH", self.connection.id, lead)
            self.transport.send({"action": int(Action.AUTH)})
        await self._sleep_until(expires_ms)
        log.info("connection %s: token expired without renewal", self.connection.id)
        self.transport.close(error_frame(Action.DISCONNECTED, EXPIRED))

    async def _sleep_until(self, at_ms: int) -> None:
        delay = (at_ms - self.sandbox.now_ms()) / 1000
        if delay > 0:
            await asyncio.sleep(delay)

    def _on_revoked(self, applies_at_ms: int) -> None:
        assert self.transport is not None
        if applies_at_ms <= self.sandbox.now_ms():
            self.transport.close(error_frame(Action.DISCONNECTED, REVOKED))
            return
        self.transport.send({"action": int(Action.AUTH)})
        if self._revocation_watch is None or self._revocation_watch.done():
            self._revocation_watch = asyncio.create_task(self._enforce_revocation(applies_at_ms))

    async def _enforce_revocation(self, applies_at_ms: int) -> None:
        await self._sleep_until(applies_at_ms)
        assert self.transport is not None and self.connection is not None
        if self.sandbox.revocations.revoked(self.connection.grant, now_ms=self.sandbox.now_ms()):
            self.transport.close(error_frame(Action.DISCONNECTED, REVOKED))

    # -- inbound frames -----------------------------------------------------------------------------

    async def _read(self, transport: Transport) -> None:
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
                transport.close(
                    error_frame(Action.ERROR, BadRequestError("Maximum frame size exceeded", code=40009, status=413))
                )
                return
            try:
                frame = decode_frame(raw)
            except AuthServerError as exc:
                transport.close(error_frame(Action.ERROR, exc))
                return
            self._dispatch(frame)

    def _dispatch(self, frame: Frame) -> None:
        assert self.connection is not None and self.transport is not None
        action = frame["action"]
        log.debug("connection %s: received action %s", self.connection.id, action)
        if action == Action.HEARTBEAT:
            if frame.get("id") is not None:
                self.transport.send({"action": int(Action.HEARTBEAT), "id": frame["id"]})
        elif action == Action.CLOSE:
            self.closed_by_client = True
            self.transport.close({"action": int(Action.CLOSED), "connectionId": self.connection.id})
        elif action == Action.DISCONNECT:
            self.transport.close()
        elif action == Action.ATTACH:
            self._send_all(attachments.attach(self.sandbox, self.connection, frame))
        elif action == Action.DETACH:
            self._send_all(attachments.detach(self.sandbox, self.connection, frame))
        elif action == Action.MESSAGE:
            self._acknowledged(frame, self._publish)
        elif action == Action.PRESENCE:
            self._acknowledged(frame, self._presence)
        elif action == Action.AUTH:
            self._reauth(frame)
        elif frame.get("msgSerial") is not None:
            self._acknowledged(frame, self._unsupported)

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

    def _check_mode(self, channel_name: str, mode: int, operation: str) -> None:
        assert self.connection is not None
        channel = self.sandbox.channels.get(channel_name)
        attachment = channel.attachments.get(self.connection.id) if channel is not None else None
        if attachment is not None and not attachment.modes & mode:
            raise TokenError(f"Channel mode {operation} was not requested or granted at attach", code=40165)

    def _publish(self, frame: Frame, serial: int) -> None:
        assert self.connection is not None and self.transport is not None
        name = frame.get("channel")
        if not isinstance(name, str):
            raise BadRequestError("MESSAGE without a channel")
        publication = self.sandbox.prepare_publish(
            name,
            frame.get("messages"),
            grant=self.connection.grant,
            identity=self.connection.identity,
            origin=self.connection.id,
            id_base=f"{self.connection.id}:{serial}",
        )
        self._check_mode(name, Flag.PUBLISH, "publish")
        self.transport.send(
            {"action": int(Action.ACK), "msgSerial": serial, "count": 1, "res": [{"serials": publication.serials()}]}
        )
        self.sandbox.commit_publish(publication)

    def _presence(self, frame: Frame, serial: int) -> None:
        assert self.connection is not None and self.transport is not None
        name = frame.get("channel")
        if not isinstance(name, str):
            raise BadRequestError("PRESENCE without a channel")
        if self.connection.grant.capability.allows(name, "presence"):
            self._check_mode(name, Flag.PRESENCE, "presence")
        events = self.sandbox.apply_presence(self.connection, name, frame.get("presence"), msg_serial=serial)
        self.transport.send({"action": int(Action.ACK), "msgSerial": serial, "count": 1})
        self.sandbox.broadcast_presence(name, events, frame_id=f"{self.connection.id}:{serial}")

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
        self._send_all(attachments.recheck(self.sandbox, connection))
        self.transport.send(self._connected_frame(connection))
        self._watch_token()
