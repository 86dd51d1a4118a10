"""Channel attachment for a realtime connection: ATTACH, DETACH and re-checking after an AUTH.

Each operation returns the frames to send, so the session only has to put them on the wire.
"""

from __future__ import annotations

from typing import Any

from ..errors import AuthServerError
from .channels import check_channel_name
from .connections import Connection
from .grants import denied
from .hub import Sandbox
from .limits import LimitError
from .payloads import is_wire_text
from .protocol import Action, Flag, Frame, error_frame, granted_modes, requested_modes


def channel_error(name: object, error: AuthServerError) -> Frame:
    """A channel-scoped ERROR (the channel goes FAILED on the client); no ``channel`` if the name is unusable."""
    fields = {"channel": name} if is_wire_text(name) else {}
    return error_frame(Action.ERROR, error, **fields)


def _echoed_params(params: object) -> dict[str, Any] | None:
    """The ATTACH ``params`` to echo in ATTACHED: string pairs only (what Ably's params are)."""
    if not isinstance(params, dict):
        return None
    kept = {k: v for k, v in params.items() if is_wire_text(k) and is_wire_text(v)}
    return kept or None


def attach(sandbox: Sandbox, connection: Connection, frame: Frame) -> list[Frame]:
    """ATTACHED (modes = requested ∩ capability), then missed messages, then SYNC pages; or ERROR.

    A repeated ATTACH (clients re-attach after every reconnect, ably-python after every CONNECTED) is
    answered again, with RESUMED when the connection missed nothing it cannot be given.
    """
    name = frame.get("channel")
    try:
        channel_name = check_channel_name(name)
        operations = connection.grant.capability.operations_for(channel_name)
        if not operations:
            raise denied(channel_name, "attach")
        most = sandbox.limits.max_channels_per_connection
        if channel_name not in connection.channels and len(connection.channels) >= most:
            raise LimitError(f"the connection is attached to the maximum of {most} channels")
        channel = sandbox.channels.get_or_create(channel_name)
    except AuthServerError as exc:
        return [channel_error(name, exc)]
    modes = requested_modes(frame.get("flags"), frame.get("params")) & granted_modes(operations)
    attachment, existed = channel.attach(connection, modes)
    connection.channels.add(channel_name)
    replay, complete = channel.catch_up(attachment)
    flags = modes
    if existed and complete:
        flags |= Flag.RESUMED
    sync = channel.sync_frames() if modes & Flag.PRESENCE_SUBSCRIBE else []
    if sync:
        flags |= Flag.HAS_PRESENCE
    attached: Frame = {
        "action": int(Action.ATTACHED),
        "channel": channel_name,
        "flags": flags,
        "channelSerial": channel.serial,
    }
    params = _echoed_params(frame.get("params"))
    if params is not None:
        attached["params"] = params
    return [attached, *replay, *sync]


def detach(sandbox: Sandbox, connection: Connection, frame: Frame) -> list[Frame]:
    """DETACHED; the connection's members on the channel leave. A DETACH without a usable name gets ERROR 40010."""
    try:
        name = check_channel_name(frame.get("channel"))
    except AuthServerError as exc:
        return [channel_error(frame.get("channel"), exc)]
    channel = sandbox.channels.get(name)
    if channel is not None:
        channel.detach(connection.id)
    connection.channels.discard(name)
    sandbox.leave_channel(connection, name)
    return [{"action": int(Action.DETACHED), "channel": name}]


def recheck(sandbox: Sandbox, connection: Connection) -> list[Frame]:
    """After an AUTH: narrow each attachment's modes; channels no longer allowed fail with 40160 (RTC8a1)."""
    frames: list[Frame] = []
    for name in sorted(connection.channels):
        channel = sandbox.channels.get(name)
        attachment = channel.attachments.get(connection.id) if channel is not None else None
        if channel is None or attachment is None:
            connection.channels.discard(name)
            continue
        operations = connection.grant.capability.operations_for(name)
        if operations:
            attachment.modes &= granted_modes(operations)
            continue
        channel.detach(connection.id)
        connection.channels.discard(name)
        sandbox.leave_channel(connection, name)
        frames.append(channel_error(name, denied(name, "attach")))
    return frames
