"""The channel frames of the realtime protocol (ATTACH, DETACH, SYNC, and what an AUTH changes on
channels): each answered with the frames to send, through the hub's :class:`~.attachments.Attachments`."""

from __future__ import annotations

from typing import Any

from authserver.errors import AuthServerError
from authserver.sandbox.attachments import channel_error
from authserver.sandbox.channels import Attachment, Channel, Rewind, check_channel_name
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
    """The ATTACH ``params`` Ably recognises, to echo in ATTACHED (as strings: an integer ``rewind``
    comes back as its digits)."""
    if not isinstance(params, dict):
        return None
    kept = {k: _param_text(v) for k, v in params.items() if k in KNOWN_PARAMS}
    return {k: v for k, v in kept.items() if v is not None} or None


def _param_text(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and is_wire_text(value) else None


def attach(sandbox: Sandbox, connection: Connection, frame: Frame) -> list[Frame]:
    """ATTACHED (modes = requested ∩ capability), then the backlog (see :func:`_backlog`), then SYNC
    pages; or ERROR."""
    name = frame.get("channel")
    params = frame.get("params")
    try:
        channel_name = check_channel_name(name)
        rewind = Rewind.parse(params["rewind"]) if isinstance(params, dict) and "rewind" in params else None
        requested = requested_modes(frame.get("flags"), params)
        channel, attachment, existed = sandbox.attachments.attach(connection, channel_name, requested)
    except AuthServerError as exc:
        return [channel_error(name, exc)]
    replay, resumed = _backlog(
        channel,
        attachment,
        frame,
        existed,
        rewind,
        now_ms=sandbox.now_ms(),
        kept_ms=sandbox.limits.connection_state_ttl_ms,
    )
    flags = attachment.modes
    if resumed:
        flags |= Flag.RESUMED
    if replay:
        flags |= Flag.HAS_BACKLOG  # ably-js ChannelStateChange.hasBacklog: "a backlog ... from a rewind or resume"
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


def _backlog(
    channel: Channel,
    attachment: Attachment,
    frame: Frame,
    existed: bool,
    rewind: Rewind | None,
    *,
    now_ms: int,
    kept_ms: int,
) -> tuple[list[Frame], bool]:
    """The messages to send after ATTACHED, and whether the attach continues without a gap (RESUMED).

    * A ``channelSerial`` of this channel (RTL4c1: clients send the last one they processed, and a
      recovering client the one in its recovery key, RTN16) is where the attachment carries on from,
      on this connection or another, for what is at most the connection state TTL old (two minutes, as
      on Ably: older is lost, and the attach is not RESUMED).
      On the transport that has been delivering to the attachment, never before what it already sent.
    * Otherwise a repeated ATTACH (clients re-attach after every reconnect, ably-python after every
      CONNECTED) carries on from what this connection was last given.
    * A first ATTACH that says it resumes (the ATTACH_RESUME flag, RTL4j, or a serial the channel does
      not know) starts now, with no backlog and no RESUMED: rewind applies only to an initial attach
      (Ably docs, channels/options/rewind; ably-js resume_rewind_1).
    * Otherwise, with a ``rewind`` param, the last messages (or minutes) of history; else nothing.
    """
    serial = frame.get("channelSerial")
    since = channel.position(serial)
    if since is not None and existed and attachment.continuous:
        # The client sent the serial it had processed while later messages were on their way to it on
        # this same socket: they arrive, so they are not sent again.
        since = max(since, attachment.seen_seq)
    if since is not None or existed:
        return channel.catch_up(attachment, since, not_before_ms=now_ms - kept_ms)
    flags = frame.get("flags")
    resuming = serial is not None or (isinstance(flags, int) and bool(flags & Flag.ATTACH_RESUME))
    if resuming or rewind is None:
        return [], False
    return channel.rewind(attachment, rewind, now_ms=now_ms), False


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
