"""Ably realtime protocol vocabulary: actions, flags, error frames and the JSON/msgpack codecs.

Frames are plain dicts with camelCase keys (what both clients send and expect). Binary ``data`` is
kept as ``bytes`` inside the sandbox and transcoded only at the edge: msgpack carries it natively,
JSON carries base64 text with ``base64`` appended to ``encoding`` (spec 6.3).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from enum import IntEnum
from typing import Any, Literal

import msgpack

from authserver.errors import AuthServerError, BadRequestError
from authserver.errors import error_info as ably_error_info

Frame = dict[str, Any]
WireFormat = Literal["json", "msgpack"]


class Action(IntEnum):
    """Protocol message actions (TR2)."""

    HEARTBEAT = 0
    ACK = 1
    NACK = 2
    CONNECT = 3
    CONNECTED = 4
    DISCONNECT = 5
    DISCONNECTED = 6
    CLOSE = 7
    CLOSED = 8
    ERROR = 9
    ATTACH = 10
    ATTACHED = 11
    DETACH = 12
    DETACHED = 13
    PRESENCE = 14
    MESSAGE = 15
    SYNC = 16
    AUTH = 17
    ACTIVATE = 18
    OBJECT = 19
    OBJECT_SYNC = 20
    ANNOTATION = 21


class PresenceAction(IntEnum):
    ABSENT = 0
    PRESENT = 1
    ENTER = 2
    LEAVE = 3
    UPDATE = 4


class Flag:
    """Protocol message flags (TR3): channel state bits and the channel mode bits."""

    HAS_PRESENCE = 1 << 0
    HAS_BACKLOG = 1 << 1
    RESUMED = 1 << 2
    TRANSIENT = 1 << 4
    ATTACH_RESUME = 1 << 5
    HAS_OBJECTS = 1 << 7
    PRESENCE = 1 << 16
    PUBLISH = 1 << 17
    SUBSCRIBE = 1 << 18
    PRESENCE_SUBSCRIBE = 1 << 19
    ANNOTATION_PUBLISH = 1 << 21
    ANNOTATION_SUBSCRIBE = 1 << 22
    OBJECT_SUBSCRIBE = 1 << 24
    OBJECT_PUBLISH = 1 << 25


#: Mode bit <- the capability operation that grants it (spec 3.5).
MODE_OPERATIONS: Mapping[int, str] = {
    Flag.PRESENCE: "presence",
    Flag.PUBLISH: "publish",
    Flag.SUBSCRIBE: "subscribe",
    Flag.PRESENCE_SUBSCRIBE: "subscribe",
    Flag.ANNOTATION_PUBLISH: "annotation-publish",
    Flag.ANNOTATION_SUBSCRIBE: "annotation-subscribe",
    Flag.OBJECT_SUBSCRIBE: "object-subscribe",
    Flag.OBJECT_PUBLISH: "object-publish",
}
MODE_NAMES: Mapping[str, int] = {
    "presence": Flag.PRESENCE,
    "publish": Flag.PUBLISH,
    "subscribe": Flag.SUBSCRIBE,
    "presence_subscribe": Flag.PRESENCE_SUBSCRIBE,
    "annotation_publish": Flag.ANNOTATION_PUBLISH,
    "annotation_subscribe": Flag.ANNOTATION_SUBSCRIBE,
    "object_subscribe": Flag.OBJECT_SUBSCRIBE,
    "object_publish": Flag.OBJECT_PUBLISH,
}
ALL_MODES = sum(MODE_OPERATIONS)
#: What a client gets when it asks for no particular modes: the four "classic" ones and, as Ably now
#: grants by default, ``annotation_publish`` (ably-spec 8.5).
DEFAULT_MODES = Flag.PRESENCE | Flag.PUBLISH | Flag.SUBSCRIBE | Flag.PRESENCE_SUBSCRIBE | Flag.ANNOTATION_PUBLISH


def requested_modes(flags: object, params: object) -> int:
    """The modes an ATTACH asks for: ``params.modes``, else mode bits in ``flags``, else the defaults.

    ``params.modes`` wins over the flags when both are given (ably-js ``channel.test.js``
    ``attachWithChannelParamsModesAndChannelModes``: "modes is ignored when params.modes is present").
    """
    if isinstance(params, Mapping) and isinstance(params.get("modes"), str):
        names = [name.strip().lower() for name in params["modes"].split(",")]
        from_params = sum(MODE_NAMES.get(name, 0) for name in set(names))
        if from_params:
            return from_params
    from_flags = flags & ALL_MODES if isinstance(flags, int) and not isinstance(flags, bool) else 0
    return from_flags or DEFAULT_MODES


def granted_modes(operations: Iterable[str]) -> int:
    """The mode bits a set of capability operations permits."""
    ops = set(operations)
    return sum(bit for bit, op in MODE_OPERATIONS.items() if op in ops)


def error_info(error: AuthServerError) -> dict[str, Any]:
    """Ably ErrorInfo for a frame or an HTTP body: ``message``, ``code``, ``statusCode``, ``href``."""
    return ably_error_info(error.code, error.status, error.message)


def error_frame(action: Action, error: AuthServerError, **fields: Any) -> Frame:
    """An ERROR / DISCONNECTED / NACK frame (``fields`` adds e.g. ``channel`` or ``msgSerial``)."""
    return {"action": int(action), **fields, "error": error_info(error)}


# -- codecs -------------------------------------------------------------------------------------------


def decode_frame(raw: str | bytes) -> Frame:
    """Decode one inbound frame: text frames are JSON, binary frames msgpack (whatever ``format`` said).

    Payloads are not checked here (see :mod:`.payloads`): msgpack extension types and timestamps stay
    as objects no codec of ours will relay, so publishing them is refused there.

    :raises BadRequestError: not a protocol message (40000).
    """
    try:
        value: object = json.loads(raw) if isinstance(raw, str) else msgpack.unpackb(raw, raw=False)
    except (ValueError, msgpack.UnpackException, TypeError, RecursionError) as exc:
        raise BadRequestError(f"unreadable protocol message ({type(exc).__name__})") from None
    if not isinstance(value, dict) or not isinstance(value.get("action"), int):
        raise BadRequestError("protocol message must be an object with an integer action")
    return value


def _for_json(item: Any) -> Any:
    if not isinstance(item, dict) or not isinstance(item.get("data"), bytes):
        return item
    out = dict(item)
    out["data"] = base64.b64encode(item["data"]).decode("ascii")
    encoding = item.get("encoding")
    out["encoding"] = f"{encoding}/base64" if encoding else "base64"
    return out


def to_json_value(frame: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``frame`` safe for JSON: binary message data as base64 (encoding gains ``base64``)."""
    out = dict(frame)
    for key in ("messages", "presence"):
        items = frame.get(key)
        if isinstance(items, list):
            out[key] = [_for_json(item) for item in items]
    return out


def payloads_for_json(items: Iterable[Mapping[str, Any]]) -> list[Any]:
    """Messages or presence messages as JSON-safe dicts (REST bodies)."""
    return [_for_json(dict(item)) for item in items]


def encode_frame(frame: Mapping[str, Any], wire_format: WireFormat) -> str | bytes:
    """Encode one outbound frame in the connection's format (JSON text or msgpack binary)."""
    if wire_format == "msgpack":
        packed: bytes = msgpack.packb(frame, use_bin_type=True)
        return packed
    return json.dumps(to_json_value(frame), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class Outbound:
    """One frame for many connections, encoded at most once per wire format (fan-out, spec 6.6)."""

    __slots__ = ("_encoded", "frame")

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
        self._encoded: dict[WireFormat, str | bytes] = {}

    def encoded(self, wire_format: WireFormat) -> str | bytes:
        """:raises ValueError, TypeError, OverflowError: the frame holds something the codec refuses."""
        data = self._encoded.get(wire_format)
        if data is None:
            data = self._encoded[wire_format] = encode_frame(self.frame, wire_format)
        return data
