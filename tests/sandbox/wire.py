"""A raw Ably protocol client for precise wire assertions (no SDK in between)."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import msgpack
from websockets.sync.client import ClientConnection, connect

Frame = dict[str, Any]

HEARTBEAT, ACK, NACK, CONNECTED, DISCONNECTED, CLOSE, CLOSED, ERROR = 0, 1, 2, 4, 6, 7, 8, 9
ATTACH, ATTACHED, DETACH, DETACHED, PRESENCE, MESSAGE, SYNC, AUTH = 10, 11, 12, 13, 14, 15, 16, 17


class Wire:
    """One WebSocket to the sandbox; ``expect`` skips heartbeats and returns the next matching frame."""

    def __init__(self, ws_base: str, *, wire_format: str = "json", **params: str) -> None:
        self.wire_format = wire_format
        query = dict(params)
        if wire_format == "msgpack":
            query["format"] = "msgpack"
        self.ws: ClientConnection = connect(f"{ws_base}/?{urlencode(query)}", open_timeout=5, close_timeout=2)
        self.raw_frames: list[str | bytes] = []

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.ws.close()

    def send(self, frame: Frame) -> None:
        if self.wire_format == "msgpack":
            self.ws.send(msgpack.packb(frame, use_bin_type=True))
        else:
            self.ws.send(json.dumps(frame))

    def recv(self, timeout: float = 5.0) -> Frame:
        raw = self.ws.recv(timeout=timeout)
        self.raw_frames.append(raw)
        value = json.loads(raw) if isinstance(raw, str) else msgpack.unpackb(raw, raw=False)
        assert isinstance(value, dict)
        return value

    def next_matching(self, predicate: Callable[[Frame], bool], what: str, *, timeout: float = 5.0) -> Frame:
        """The next frame satisfying ``predicate``; everything before it is skipped."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {what} within {timeout} s")
            frame = self.recv(timeout=remaining)
            if predicate(frame):
                return frame

    def expect(self, action: int, *, timeout: float = 5.0, channel: str | None = None) -> Frame:
        """The next frame with ``action`` (and ``channel``, if given)."""
        return self.expect_any({action}, timeout=timeout, channel=channel)

    def expect_any(self, actions: set[int], *, timeout: float = 5.0, channel: str | None = None) -> Frame:
        return self.next_matching(
            lambda f: f["action"] in actions and (channel is None or f.get("channel") == channel),
            f"frame with action in {sorted(actions)}",
            timeout=timeout,
        )

    def connected(self) -> Frame:
        return self.expect(CONNECTED)

    def attach(self, channel: str, **fields: Any) -> Frame:
        """ATTACH and return the ATTACHED or channel ERROR that answers it."""
        self.send({"action": ATTACH, "channel": channel, **fields})
        return self.expect_any({ATTACHED, ERROR}, channel=channel)


def deaf_client(host: str, port: int, query: dict[str, str], frames: list[Frame]) -> socket.socket:
    """A WebSocket client that sends ``frames`` (JSON) after the upgrade and then never reads again.

    Its receive buffer is tiny, so the sandbox's writes to it soon block: a client that stopped reading.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /?{urlencode(query)} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    sock.settimeout(5)
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1024)
    assert response.startswith(b"HTTP/1.1 101"), response[:40]
    for frame in frames:
        payload = json.dumps(frame).encode()
        assert len(payload) < 126
        sock.sendall(bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)  # masked with a zero key
    return sock
