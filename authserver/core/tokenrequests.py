"""Signed Ably TokenRequests (token-request-spec): the secret never leaves the server and the
capability is not visible to the client in a JWT; the client exchanges the request with Ably."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from authserver.core.keys import AblyKey


def _text(value: object) -> str:
    return "" if value is None else str(value)


def compute_mac(
    *,
    key_name: str,
    ttl: int | str | None,
    capability: str | None,
    client_id: str | None,
    timestamp: int | str,
    nonce: str,
    secret: str,
) -> str:
    """The TokenRequest MAC of spec 4.2: every field followed by a newline, empty when absent.

    The capability is used exactly as given (Ably MACs the string as received, whitespace included).
    """
    text = "".join(_text(part) + "\n" for part in (key_name, ttl, capability, client_id, timestamp, nonce))
    digest = hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A signed TokenRequest, exactly the seven keys both clients accept (spec 4.1)."""

    key_name: str
    ttl: int
    capability: str
    client_id: str | None
    timestamp: int
    nonce: str
    mac: str

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "keyName": self.key_name,
            "ttl": self.ttl,
            "capability": self.capability,
            "timestamp": self.timestamp,
            "nonce": self.nonce,
            "mac": self.mac,
        }
        if self.client_id is not None:
            out["clientId"] = self.client_id
        return out


def create_token_request(
    key: AblyKey,
    *,
    capability: str,
    client_id: str | None,
    ttl_ms: int,
    now_ms: int,
    nonce: str | None = None,
) -> TokenRequest:
    """Sign a fresh TokenRequest (a new nonce each time: a reused request fails with 40105)."""
    nonce = nonce if nonce is not None else secrets.token_hex(16)
    mac = compute_mac(
        key_name=key.name,
        ttl=ttl_ms,
        capability=capability,
        client_id=client_id,
        timestamp=now_ms,
        nonce=nonce,
        secret=key.secret,
    )
    return TokenRequest(key.name, ttl_ms, capability, client_id, now_ms, nonce, mac)
