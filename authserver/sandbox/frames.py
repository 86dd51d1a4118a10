"""The channel frames of the realtime protocol (ATTACH, DETACH, SYNC, and what an AUTH changes on
channels): each answered with the frames to send, through the hub's :class:`~.attachments.Attachments`."""

from __future__ import annotations

from typing import Any

from authserver.errors import AuthServerError
from authserver.sandbox.attachments import channel_error
from authserver.sandbox.channels import Rewind, check_channel_name
from authserver.sandbox.connections import Connection
from authserver.sandbox.grants import denied
from authserver.sandbox.hub import Sandbox
from authserver.sandbox.payloads import is_wire_text
from authserver.sandbox.protocol import Action, Flag, Frame, requested_modes

#: Channel params Ably recognises and echoes in ATTACHED; anything else is dropped, as on Ably
#: (ably-js ``test/realtime/channel.test.js`` ``attachWithInvalidChannelParams``: "not recognised so we
#: should end up with an empty params object").
KNOWN_PARAMS = frozenset({"modes", "delta", "rewind", "occupancy"})


def _echoed_params(params: object) -> dict[str, Any] | None:
    """The ATTACH ``params`` Ably recognises, to echo in ATTACHED (string pairs only)."""
    if not isinstance(params, dict):
        return None
    kept = {k: v for k, v in params.items() if k in KNOWN_PARAMS and is_wire_text(v)}
    return kept or None


def attach(sandbox: Sandbox, connection: Connection, frame: Frame) -> list[Frame]:
    """ATTACHED (modes = requested ∩ capability), then missed messages, then SYNC pages; or ERROR.

    A repeated ATTACH (clients re-attach after every reconnect, ably-python after every CONNECTED) is
    answered again, with RESUMED when the connection missed nothing it cannot be given.
    """
    name = frame.get("channel")
    params = frame.get("params")
    try:
        channel_name = check_channel_name(name)
        rewind = Rewind.parse(params["rewind"]) if isinstance(params, dict) and "rewind" in params else None
        requested = requested_modes(frame.get("flags"), params)
        channel, attachment, existed = sandbox.attachments.attach(connection, channel_name, requested)
    except AuthServerError as exc:
        return [channel_error(name, exc)]
    replay, complete = channel.catch_up(attachment)
    if rewind is not None and not existed:
        # A first attach with rewind gets recent history after ATTACHED (Ably "rewind" channel param).
        replay = channel.rewind(attachment, rewind, now_ms=sandbox.now_ms())
    flags = attachment.modes
    if existed and complete:
        flags |= Flag.RESUMED
    sync = channel.sync_frames() if attachment.modes & Flag.PRESENCE_SUBSCRIBE else []
    if sync:
        flags |= Flag.HAS_PRESENCE
    attached: Frame = {
        "action": int(Action.ATTACHED),
        "channel": channel_name,
        "flags": flags,
        "channelSerial": channel.serial,
    }
    echoed = _echoed_params(params)
    if echoed is not None:
        attached["params"] = echoed
    return [attached, *replay, *sync]


def detach(sandbox: Sandbox, connection: Connection, frame: Frame) -> list[Frame]:
    """DETACHED; the connection's members on the channel leave. A DETACH without a usable name gets ERROR 40010."""
    try:
        name = check_channel_name(frame.get("channel"))
    except AuthServerError as exc:
        return [channel_error(frame.get("channel"), exc)]
    sandbox.attachments.detach(connection, name)
    sandbox.leave_channel(connection, name)
    return [{"action": int(Action.DETACHED), "channel": name}]


def presence_sync(sandbox: Sandbox, connection: Connection, frame: Frame) -> list[Frame]:
    """A client-requested SYNC (RTP19/ably-js ``sync()``): the current members again, for an attached
    channel with presence_subscribe; a channel ERROR 90001 when it is not attached."""
    name = frame.get("channel")
    found = sandbox.attachments.get(connection, name) if isinstance(name, str) else None
    if found is None or not found[1].modes & Flag.PRESENCE_SUBSCRIBE:
        error = AuthServerError("Presence sync requested on a channel that is not attached", code=90001, status=400)
        return [channel_error(name, error)]
    channel = found[0]
    return channel.sync_frames() or [
        {"action": int(Action.SYNC), "channel": channel.name, "channelSerial": "sync:", "presence": []}
    ]


def reauthorised(sandbox: Sandbox, connection: Connection) -> list[Frame]:
    """After an AUTH: modes follow the new capability; channels no longer allowed fail with 40160 (RTC8a1);
    presence members carry the new token's user claims."""
    frames: list[Frame] = []
    for name in sandbox.attachments.reauthorise(connection):
        sandbox.leave_channel(connection, name)
        frames.append(channel_error(name, denied(name, "attach")))
    sandbox.reclaim_presence(connection)
    return frames
