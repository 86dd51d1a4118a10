"""Opaque tokens issued by ``POST /keys/{keyName}/requestToken`` in exchange for a TokenRequest.

The checks follow the token-request-spec (spec 4.2): MAC over the fields *exactly as received*
(constant-time), timestamp within the window, single-use nonce, TTL limits, capability valid and
intersecting the key's. Refusals:

=====================================================  =====  ======
condition                                              code   status
=====================================================  =====  ======
unknown key name in the URL, bad or missing MAC        40101  401
keyName in the body differs from the URL                40000  400
a field of the wrong type, nonce shorter than 16        40000  400
timestamp outside the window                           40104  401
nonce already used with this key and timestamp        40105  401
ttl not positive or above ``max_token_ttl_ms``         40003  400
capability invalid                                     40000  400
capability ∩ key capability empty                      40160  401
clientId empty or not a string                         40012  400
=====================================================  =====  ======
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from authserver.core.capabilities import Capability
from authserver.core.tokenrequests import compute_mac
from authserver.errors import BadRequestError, ClientIdError, NotAuthenticatedError, TokenError
from authserver.sandbox.grants import JudgedCredential, Keyring
from authserver.sandbox.limits import LimitError, SandboxLimits

#: Opaque sandbox tokens start with this, so the judge never mistakes one for a JWT.
OPAQUE_PREFIX = "sbxtok_"
DEFAULT_TTL_MS = 3_600_000
MIN_NONCE_LENGTH = 16
_DIGITS = re.compile(r"[0-9]{1,19}")


class IssuedTokens:
    """Opaque token -> grant, oldest forgotten first once ``max_tokens`` is reached."""

    def __init__(self, max_tokens: int) -> None:
        self._tokens: OrderedDict[str, JudgedCredential] = OrderedDict()
        self._max_tokens = max_tokens

    def __len__(self) -> int:
        return len(self._tokens)

    def add(self, grant: JudgedCredential, *, now_ms: int) -> str:
        for token in [t for t, g in self._tokens.items() if g.expires_ms is not None and g.expires_ms <= now_ms]:
            del self._tokens[token]
        while len(self._tokens) >= self._max_tokens:
            self._tokens.popitem(last=False)
        token = OPAQUE_PREFIX + secrets.token_urlsafe(24)
        self._tokens[token] = grant
        return token

    def get(self, token: str) -> JudgedCredential | None:
        return self._tokens.get(token)


class NonceLog:
    """(nonce, timestamp) pairs seen per key, remembered for twice the timestamp window (older requests
    fail on time anyway).

    Replay protection is on nonce *and* timestamp, as on Ably: the same nonce with a new timestamp is a
    new request (ably-spec 8.5; the ably-js/ably-python suites reuse nonces across TokenRequests).
    """

    def __init__(self, max_entries: int, window_ms: int) -> None:
        self._seen: OrderedDict[tuple[str, str, int], int] = OrderedDict()
        self._max_entries = max_entries
        self._window_ms = window_ms

    def use(self, key_name: str, nonce: str, timestamp: int, *, now_ms: int) -> None:
        """:raises TokenError: 40105 when this nonce was already used with this key and timestamp."""
        while self._seen and next(iter(self._seen.values())) < now_ms - 2 * self._window_ms:
            self._seen.popitem(last=False)
        entry = (key_name, nonce, timestamp)
        if entry in self._seen:
            raise TokenError("Nonce value replayed", code=40105, status=401)
        if len(self._seen) >= self._max_entries:
            raise LimitError(f"too many TokenRequests in flight (max_issued_tokens={self._max_entries})")
        self._seen[entry] = now_ms


def _optional_str(body: Mapping[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise BadRequestError(f"TokenRequest {field} must be a string")
    return value


def _integer(value: object, field: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    # NOTE: ASCII digits only: str.isdigit() accepts "²", which int() then refuses.
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    raise BadRequestError(f"TokenRequest {field} must be an integer")


class TokenIssuer:
    """Exchanges TokenRequests for opaque sandbox tokens."""

    def __init__(self, keyring: Keyring, limits: SandboxLimits, tokens: IssuedTokens) -> None:
        self._keyring = keyring
        self._limits = limits
        self._tokens = tokens
        self._nonces = NonceLog(limits.max_issued_tokens, limits.token_request_window_ms)

    def exchange(
        self, key_name: str, body: object, *, now_ms: int, basic: JudgedCredential | None = None
    ) -> tuple[str, JudgedCredential]:
        """Check a TokenRequest posted to ``/keys/{key_name}/requestToken`` and issue a token.

        ``basic`` is the caller's basic-auth grant, which makes a MAC unnecessary (unsigned request).

        :raises AuthServerError: see the module table.
        """
        key = self._keyring.get(key_name)
        if key is None:
            raise NotAuthenticatedError("Invalid key name in the request URL")
        if not isinstance(body, Mapping):
            raise BadRequestError("TokenRequest must be an object")
        if body.get("keyName") != key_name:
            raise BadRequestError("TokenRequest keyName does not match the key in the URL")
        nonce = _optional_str(body, "nonce")
        capability_text = _optional_str(body, "capability")
        client_id = body.get("clientId")
        mac = _optional_str(body, "mac")
        if nonce is None or len(nonce) < MIN_NONCE_LENGTH:
            raise BadRequestError(f"TokenRequest nonce must be at least {MIN_NONCE_LENGTH} characters")
        timestamp = _integer(body.get("timestamp"), "timestamp")
        raw_ttl = body.get("ttl")
        if mac is None:
            if basic is None or basic.kind != "key" or basic.key_name != key_name:
                raise NotAuthenticatedError("TokenRequest has no mac and the request is not made with the key")
        else:
            # NOTE: the MAC covers every field as the client sent it; never re-serialise the capability.
            expected = compute_mac(
                key_name=key_name,
                ttl=raw_ttl if isinstance(raw_ttl, (int, str)) else None,
                capability=capability_text,
                client_id=client_id if isinstance(client_id, str) else None,
                timestamp=timestamp,
                nonce=nonce,
                secret=key.secret,
            )
            if not hmac.compare_digest(mac.encode("utf-8"), expected.encode("ascii")):
                raise NotAuthenticatedError("Invalid MAC in TokenRequest")
        if abs(now_ms - timestamp) > self._limits.token_request_window_ms:
            raise TokenError("Timestamp not current", code=40104, status=401)
        ttl = DEFAULT_TTL_MS if raw_ttl is None else _integer(raw_ttl, "ttl")
        if not 0 < ttl <= self._limits.max_token_ttl_ms:
            raise BadRequestError(
                f"TokenRequest ttl must be between 1 and {self._limits.max_token_ttl_ms} ms", code=40003
            )
        if client_id is not None and (not isinstance(client_id, str) or not client_id):
            raise ClientIdError("TokenRequest clientId must be a non-empty string")
        key_capability = self._keyring.capability(key_name)
        capability = key_capability
        if capability_text is not None:
            capability = Capability.parse(capability_text).intersect(key_capability)
            if capability.is_empty():
                raise TokenError("Requested capability is not a subset of the key's capability", code=40160)
        self._nonces.use(key_name, nonce, timestamp, now_ms=now_ms)
        grant = JudgedCredential("token", key_name, capability, client_id, now_ms, now_ms + ttl)
        return self._tokens.add(grant, now_ms=now_ms), grant


def token_details(token: str, grant: JudgedCredential) -> dict[str, Any]:
    """TokenDetails (spec 4.3) for an issued token: times in ms, the granted capability as JSON text."""
    details: dict[str, Any] = {
        "token": token,
        "keyName": grant.key_name,
        "issued": grant.issued_ms,
        "expires": grant.expires_ms,
        "capability": grant.capability.to_json(),
    }
    if grant.client_id is not None:
        details["clientId"] = grant.client_id
    return details
