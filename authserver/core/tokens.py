"""Ably JWTs: HS256, header ``kid`` = key name, claims ``iat``/``exp`` (seconds),
``x-ably-capability`` (a JSON *string*) and ``x-ably-clientId`` for identified clients.

Signing is on the hot path of ``/auth``, so :class:`TokenSigner` prepares the key and encodes the
constant header once, and writes the claims JSON directly; the signature is HMAC-SHA256 (stdlib). The
output is a standard JWS compact serialisation that any JWT library verifies (our tests decode every
token with ``jwt.decode``).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple

from authserver.core.keys import AblyKey

CAPABILITY_CLAIM = "x-ably-capability"
CLIENT_ID_CLAIM = "x-ably-clientId"
REVOCATION_KEY_CLAIM = "x-ably-revocation-key"

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


_URLSAFE = bytes.maketrans(b"+/", b"-_")
_RESERVED = frozenset({"iat", "exp", CAPABILITY_CLAIM, CLIENT_ID_CLAIM})


def _b64url(data: bytes) -> bytes:
    """base64url without padding (RFC 7515 2), in one C call and one translate."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


#: A str as a JSON string literal, ASCII-only: the C function json.dumps itself uses.
json_string: Callable[[str], str] = encode_basestring_ascii


def _json_value(value: Any) -> str:
    """``value`` as compact JSON, the text :data:`_dumps` gives: strings, ints and finite floats
    written directly (the claims of a token are these), anything else through the encoder."""
    kind = type(value)
    if kind is str:
        return json_string(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and value - value == 0.0:  # finite (NaN and the infinities go to the encoder)
        return float.__repr__(value)
    return _dumps(value)


def claims_json(extra_claims: Mapping[str, Any]) -> str:
    """``,"name":value`` for each claim in order: what follows the Ably claims in the payload JSON (for
    :meth:`TokenSigner.sign_written`; written once for claims that are signed again and again).

    :raises ValueError: a claim that would replace one of the Ably claims.
    """
    if not _RESERVED.isdisjoint(extra_claims):
        reserved = _RESERVED.intersection(extra_claims)
        raise ValueError(f"extra_claims may not replace {', '.join(sorted(reserved))}")
    return "".join([f",{json_string(name)}:{_json_value(value)}" for name, value in extra_claims.items()])


class TokenSigner:
    """Signs Ably JWTs with one key. Build once at start-up; ``sign`` is cheap and thread-safe."""

    def __init__(self, key: AblyKey) -> None:
        self.key = key
        header = {"alg": "HS256", "kid": key.name, "typ": "JWT"}
        self._header_segment = _b64url(_dumps(header).encode("ascii")) + b"."
        # NOTE: HS256 with the stdlib (PyJWT's HMACAlgorithm would import cryptography into every worker).
        self._mac = hmac.new(key.secret_bytes, digestmod=hashlib.sha256)

    def __repr__(self) -> str:
        return f"TokenSigner(key={self.key.name!r})"

    def sign(
        self,
        *,
        capability: str,
        client_id: str | None,
        issued_at: int,
        expires_at: int,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """Return a signed JWT. Times are whole seconds since the epoch."""
        extra = claims_json(extra_claims) if extra_claims else ""
        return self.sign_written(capability, client_id, issued_at, expires_at, extra)

    def sign_written(self, capability: str, client_id: str | None, issued_at: int, expires_at: int, extra: str) -> str:
        """:meth:`sign` with the extra claims already written by :func:`claims_json` (``""``: none)."""
        # Written out in the encoder's order (the Ably claims, then the extra ones as given): the same
        # JSON ``json.dumps`` would produce for the claims dict, without building it.
        payload = f'{{"iat":{int(issued_at)},"exp":{int(expires_at)},"{CAPABILITY_CLAIM}":{json_string(capability)}'
        if client_id is not None:
            payload += f',"{CLIENT_ID_CLAIM}":{json_string(client_id)}'
        signing_input = self._header_segment + _b64url((payload + extra + "}").encode("ascii"))
        mac = self._mac.copy()
        mac.update(signing_input)
        return (signing_input + b"." + _b64url(mac.digest())).decode("ascii")

    def verifies(self, signing_input: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's HS256 signature of ``signing_input`` (constant time)."""
        mac = self._mac.copy()
        mac.update(signing_input)
        return hmac.compare_digest(mac.digest(), signature)


def sign_jwt(
    key: AblyKey,
    *,
    capability: str,
    client_id: str | None,
    issued_at: int,
    expires_at: int,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """One-off convenience around :class:`TokenSigner`, for callers that sign rarely."""
    return TokenSigner(key).sign(
        capability=capability,
        client_id=client_id,
        issued_at=issued_at,
        expires_at=expires_at,
        extra_claims=extra_claims,
    )


class IssuedToken(NamedTuple):
    """A minted token and what it grants. ``token`` is secret: it is not part of the repr.

    A named tuple rather than a frozen dataclass: one is built per ``/auth`` request.
    """

    token: str
    key_name: str
    issued_ms: int
    expires_ms: int
    capability: str
    client_id: str | None

    def __repr__(self) -> str:
        return (
            f"IssuedToken(key_name={self.key_name!r}, client_id={self.client_id!r}, "
            f"issued_ms={self.issued_ms}, expires_ms={self.expires_ms}, capability={self.capability!r})"
        )

    def details_json(self) -> str:
        """:meth:`details` serialised (compact JSON), built without the encoder on the hot path."""
        body = (
            f'{{"token":{json_string(self.token)},'
            f'"keyName":{json_string(self.key_name)},"issued":{self.issued_ms},"expires":{self.expires_ms},'
            f'"capability":{json_string(self.capability)}'
        )
        if self.client_id is not None:
            body += f',"clientId":{json_string(self.client_id)}'
        return body + "}"

    def details(self) -> dict[str, Any]:
        """TokenDetails JSON (spec 4.3): the form both Ably clients handle on every renewal path."""
        out: dict[str, Any] = {
            "token": self.token,
            "keyName": self.key_name,
            "issued": self.issued_ms,
            "expires": self.expires_ms,
            "capability": self.capability,
        }
        if self.client_id is not None:
            out["clientId"] = self.client_id
        return out
