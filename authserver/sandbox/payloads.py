"""Message and presence payloads at ingress: what may be relayed, and how big it counts as.

Whatever one client publishes is sent to every subscriber in *its* format and served by REST history,
so a payload is accepted only if it can be encoded both as JSON and as msgpack: strings (valid UTF-8),
finite numbers that fit 64 bits, booleans, null, lists and objects with string keys, at most
``MAX_DEPTH`` deep. Binary data (``bytes``) is allowed as a message's top-level ``data`` only, where
JSON subscribers get it as base64 (spec 6.3). msgpack extension types and timestamps, JSON ``NaN`` /
``Infinity``, byte-string map keys and lone surrogates are refused with 40000.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from typing import Any

from authserver.core.channelclaims import is_unicode_text
from authserver.errors import BadRequestError

#: Deepest nesting of lists/objects accepted in ``data`` or ``extras``.
MAX_DEPTH = 64
_MIN_INT, _MAX_INT = -(2**63), 2**64 - 1  # what msgpack can carry


def is_wire_text(value: object) -> bool:
    """Whether ``value`` is a string both codecs can carry (no lone surrogates)."""
    return isinstance(value, str) and is_unicode_text(value)


def _check_value(value: object, field: str) -> None:
    """:raises BadRequestError: 40000 when ``value`` cannot be relayed in both formats."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            if not is_wire_text(item):
                raise BadRequestError(f"message {field} contains text that is not valid UTF-8")
        elif isinstance(item, int):
            if not _MIN_INT <= item <= _MAX_INT:
                raise BadRequestError(f"message {field} contains an integer outside 64 bits")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise BadRequestError(f"message {field} contains NaN or Infinity")
        elif isinstance(item, (list, dict)):
            if depth >= MAX_DEPTH:
                raise BadRequestError(f"message {field} is nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                if not all(is_wire_text(key) for key in item):
                    raise BadRequestError(f"message {field} has an object key that is not a string")
                children: Any = item.values()
            else:
                children = item
            stack.extend((child, depth + 1) for child in children)
        else:
            raise BadRequestError(f"message {field} contains a value of unsupported type {type(item).__name__}")


def _decode_base64(item: dict[str, Any]) -> None:
    """Turn base64 text data (encoding ending in ``base64``) into bytes, dropping that encoding step."""
    encoding = item.get("encoding")
    data = item.get("data")
    if isinstance(encoding, str) and isinstance(data, str) and encoding.split("/")[-1] == "base64":
        try:
            item["data"] = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequestError("message data is not valid base64") from None
        rest = encoding.rsplit("/", 1)[0] if "/" in encoding else ""
        if rest:
            item["encoding"] = rest
        else:
            item.pop("encoding", None)


def check_payload(item: dict[str, Any]) -> dict[str, Any]:
    """Validate one inbound message or presence message in place and return it.

    Base64 ``data`` (``encoding`` ending in ``base64``) becomes ``bytes`` so every subscriber gets it
    in its own format.

    :raises BadRequestError: 40000 for a field of the wrong type or a value that cannot be relayed.
    """
    for field in ("id", "name", "clientId", "encoding"):
        value = item.get(field)
        if value is not None and not is_wire_text(value):
            raise BadRequestError(f"message {field} must be a string")
    _decode_base64(item)
    data = item.get("data")
    if not isinstance(data, bytes):
        _check_value(data, "data")
    extras = item.get("extras")
    if extras is not None:
        if not isinstance(extras, dict):
            raise BadRequestError("message extras must be an object")
        _check_value(extras, "extras")
    return item


def payload_size(item: Mapping[str, Any]) -> int:
    """Ably's message size (TO3l8): name + clientId + data + extras (JSON), in bytes.

    Only for payloads that passed :func:`check_payload`.
    """
    size = 0
    for field in ("name", "clientId"):
        value = item.get(field)
        if isinstance(value, str):
            size += len(value.encode("utf-8"))
    data = item.get("data")
    if isinstance(data, bytes):
        size += len(data)
    elif isinstance(data, str):
        size += len(data.encode("utf-8"))
    elif data is not None:
        size += len(json.dumps(data, allow_nan=False).encode("utf-8"))
    if item.get("extras") is not None:
        size += len(json.dumps(item["extras"], allow_nan=False).encode("utf-8"))
    return size


def stamp_user_claim(message: dict[str, Any], user_claim: str | None) -> dict[str, Any]:
    """``message`` with ``extras.userClaim`` set to the sender's token claim for the channel, as Ably does.

    The sender never chooses it: a client-supplied ``userClaim`` is replaced, or removed when the
    credential has no claim for the channel, so a receiver can trust it came from a token.
    """
    extras = message.get("extras")
    if user_claim is None and not (isinstance(extras, dict) and "userClaim" in extras):
        return message
    kept = {k: v for k, v in extras.items() if k != "userClaim"} if isinstance(extras, dict) else {}
    if user_claim is not None:
        kept["userClaim"] = user_claim
    if kept:
        message["extras"] = kept
    else:
        message.pop("extras", None)
    return message
