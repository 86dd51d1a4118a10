"""The start of a realtime connection (spec 6.4): credentials from the URL, resume or a new connection,
and the CONNECTED frame (also sent again after an in-band AUTH)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from authserver.errors import AuthServerError, BadRequestError, NotAuthenticatedError, TokenError
from authserver.sandbox.connections import Connection
from authserver.sandbox.grants import Actor, JudgedCredential
from authserver.sandbox.hub import Sandbox
from authserver.sandbox.limits import SandboxLimits
from authserver.sandbox.protocol import Action, Frame, error_info

log = logging.getLogger("authserver.sandbox")


def credentials(sandbox: Sandbox, params: Mapping[str, str]) -> JudgedCredential:
    """The grant of the credentials on the WebSocket URL (``access_token``/``accessToken``, or ``key``).

    :raises AuthServerError: the judge's codes; 40101 without credentials.
    """
    token = params.get("access_token") or params.get("accessToken")
    now = sandbox.now_ms()
    if token:
        return sandbox.judge.judge(token, now_ms=now)
    key = params.get("key")
    if key:
        return sandbox.keyring.check_basic(key, now_ms=now)
    raise NotAuthenticatedError("No authentication information provided (access_token, accessToken or key)")


def resume_or_open(
    sandbox: Sandbox, params: Mapping[str, str], grant: JudgedCredential, identity: Actor
) -> tuple[Connection, AuthServerError | None]:
    """The connection named by ``resume`` (RTN15c6) or ``recover`` (RTN16), else a new one with the reason
    it could not be resumed (80008, RTN15c7) or recovered (80018, RTN16d).

    :raises AuthServerError: 40102 resuming someone else's connection; 40150 no connection slot;
        40000 a ``remainPresentFor`` that is not a number of milliseconds.
    """
    resume = params.get("resume")
    recover = params.get("recover")
    error: AuthServerError | None = None
    if not (resume and resume != "None") and recover:
        found = sandbox.connections.find(recover)
        if found is not None and found.grant.app_id == grant.app_id:
            if found.identity.identified and identity.client_id != found.identity.client_id:
                raise TokenError("Mismatched clientId for existing connection", code=40102, status=401)
            found.grant, found.identity = grant, identity
            log.info("connection %s recovered", found.id)
            return found, None
        error = BadRequestError("Unable to recover connection (connection not found or expired)", code=80018)
    elif resume and resume != "None":
        found = sandbox.connections.find(resume)
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
    echo = params.get("echo") != "false"
    remain = params.get("remainPresentFor")
    if remain is not None and not (remain.isascii() and remain.isdigit() and len(remain) <= 9):
        raise BadRequestError("remainPresentFor must be a number of milliseconds")
    remain_ms = None if remain is None else int(remain)
    return sandbox.open_connection(grant, identity, echo=echo, remain_present_ms=remain_ms), error


def connected_frame(connection: Connection, limits: SandboxLimits, error: AuthServerError | None = None) -> Frame:
    """CONNECTED with the mandatory ``connectionDetails`` (CD2, spec 6.4)."""
    details: dict[str, Any] = {
        "connectionKey": connection.key,
        "maxMessageSize": limits.max_message_size,
        "maxInboundRate": 250,
        "maxFrameSize": limits.max_frame_size,
        "serverId": "authserver-sandbox",
        "connectionStateTtl": limits.connection_state_ttl_ms,
        "maxIdleInterval": limits.max_idle_interval_ms,
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
