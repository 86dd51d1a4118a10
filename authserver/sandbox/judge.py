"""Token judgement the way Ably does it: Ably JWTs (HS256) and the sandbox's own opaque tokens.

Pure apart from the stores it reads (issued tokens, revocations): the time is a parameter.
Every refusal is a :class:`~authserver.errors.AuthServerError` carrying Ably's code and status:

=====================================================================  =====  ======
condition                                                              code   status
=====================================================================  =====  ======
longer than ``max_token_length`` and shaped like a JWT                 40144  401
longer than ``max_token_length`` otherwise                             40145  401
not a token at all: neither a JWT (three base64url segments whose      40101  401
header is a JSON object) nor an opaque token the sandbox issued
claims not base64url or not a JSON object                              40144  401
``alg`` other than ``HS256`` (``none``, ``RS256``, ``HS512``...)      40144  401
``kid`` missing, empty or not a string                                 40144  401
``kid`` names an app the sandbox does not have                         40400  404
``kid`` names no key the sandbox knows (of an app it has)              40101  401
signature does not verify with that key's secret                       40101  401
``iat`` / ``exp`` missing, not numbers, outside [0, 1e11) s            40144  401
``exp`` not after ``iat``                                              40144  401
``exp`` reached (no grace)                                             40142  401
``iat`` more than ``clock_skew_ms`` in the future                      40001  400
lifetime ``exp - iat`` above ``max_token_ttl_ms``                      40003  400
lifetime above 1 h (``max_revocable_token_ttl_ms``) for a key with     40003  400
revocable tokens (every sandbox key unless made non-revocable)
``x-ably-capability`` missing, not a string, or invalid capability     40144  401
``x-ably-clientId`` not a non-empty string                             40012  400
``x-ably-revocation-key`` not a string                                 40144  401
``ably.channel.<resource>`` not a string of valid Unicode, or a         40144  401
resource that is not a usable resource name
``ably.limits.publish.perAttachment.maxRate.<resource>`` not a         40144  401
positive finite number, or a bad resource name (above 1e9: no limit)
embedded token (``x-ably-token``) whose outer ``exp`` is missing or   40144  401
later than the inner token's expiry (the inner token is judged as above)
embedded ``x-ably-token`` that is not a non-empty string               40144  401
capability ∩ key capability empty                                      40160  401
revoked (``revokeTokens``, token issued before ``issuedBefore``)       40141  401
=====================================================================  =====  ======

A string that is not a token at all (``invalid-token``, ``Sdnurv_some_invalid_token_nkds9r7``) gets 40101
as on Ably (ably-spec 8.2; ably-python's ``test/ably/realtime/realtimeauth_test.py``
``test_auth_with_invalid_token_string`` / ``test_auth_with_invalid_token_details`` expect FAILED with
40101/401; RSA4 makes it a non-token error that clients do not renew). 40143/40144 would
be in the renewable 4014x range and clients would fetch and present the same string again and again.

An *embedded token* JWT (Ably JWT docs "Embedded token", ably-spec 2.5) is the app's own JWT carrying an Ably
token (opaque or an Ably JWT) in its JOSE header ``x-ably-token`` (or, unencrypted, a claim of that name).
Ably cannot verify the outer signature and does not: the inner token is judged, and the outer ``exp`` must
not be later than the inner token's expiry.

A ``kid`` whose app (the part before the dot) the sandbox does not have is 404 / 40400, as Ably answers
it: ably-js ``test/rest/auth.test.js`` "JWT request with invalid key" and "Rest JWT with authCallback and
invalid keys" sign with ``invalid.invalid`` and expect 40400 / 404 ("app id does not exist"); 40400 is
outside the token range, so clients do not renew.

Decisions where Ably's behaviour is unconfirmed (spec 2.3): a wrong signature and an unknown ``kid`` of a
known app are *credential* errors (40101, outside the 4014x range), so clients move to FAILED at once instead of
fetching the same bad token again and again; a misconfigured signing key is a configuration error.
Everything that makes the JWT unreadable is 40144, which clients treat as renewable, as Ably does.

Further decisions (spec 2.2-2.4):

* ``x-ably-capability`` is required (40144). Ably's JWT page says so; its API reference and ably-server
  let a JWT without it inherit the key's capability. The sandbox is the stricter one on purpose: a
  token service that forgets the claim is a bug the sandbox should show, not hide.
* ``iat`` / ``exp`` may be fractional: RFC 7519 NumericDate allows it and Ably does not document a
  refusal; they are truncated to milliseconds.
* An ``iat`` in the future is 40001 / 400 "issuedAt time must not be in the future", as on Ably
  (ably/ably-js#1720): outside the 4014x range, so clients fail instead of fetching another token from
  the same skewed issuer again and again.
* Keys have revocable tokens enabled unless made non-revocable (``create_sandbox_app(non_revocable_keys=)``):
  their tokens live at most 1 h (spec 2.4, "a token that is revocable, but has a TTL of longer than
  1 hr, is rejected"); the others up to ``max_token_ttl_ms`` (24 h).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re

from authserver.core.capabilities import Capability, check_resource
from authserver.core.channelclaims import MAX_PUBLISH_RATE, PUBLISH_RATE_PREFIX, USER_CLAIM_PREFIX
from authserver.core.keys import AblyKey
from authserver.core.tokens import CAPABILITY_CLAIM, CLIENT_ID_CLAIM, REVOCATION_KEY_CLAIM, TokenSigner
from authserver.errors import AuthServerError, BadRequestError, ClientIdError, NotAuthenticatedError, TokenError
from authserver.sandbox.grants import NO_CLAIMS, JudgedCredential, Keyring, TokenClaims
from authserver.sandbox.limits import SandboxLimits
from authserver.sandbox.native_tokens import OPAQUE_PREFIX, IssuedTokens
from authserver.sandbox.payloads import is_wire_text
from authserver.sandbox.revocation import Revocations

EMBEDDED_TOKEN = "x-ably-token"  # noqa: S105 (a header and claim name)

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
#: Upper bound for ``iat``/``exp`` (year 5138): keeps every later millisecond computation in range.
MAX_SECONDS = 1e11


def invalid_jwt(reason: str) -> TokenError:
    return TokenError(f"Invalid JWT: {reason}", code=40144, status=401)


def not_a_token() -> NotAuthenticatedError:
    return NotAuthenticatedError("Invalid accessToken: neither a JWT nor a token issued by this app")


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


def _segment(text: str, part: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise invalid_jwt(f"{part} is not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise invalid_jwt(f"{part} is not base64url") from None


def _json_object(data: bytes, part: str) -> dict[str, object]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise invalid_jwt(f"{part} is not JSON") from None
    if not isinstance(value, dict):
        raise invalid_jwt(f"{part} is not a JSON object")
    return value


def _seconds(claims: dict[str, object], name: str) -> float:
    value = claims.get(name)
    if value is None:
        raise invalid_jwt(f"{name} must be specified")
    # NOTE: range-checked before any float conversion or arithmetic: 10**400 or 1e306 would overflow.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < MAX_SECONDS:
        raise invalid_jwt(f"{name} must be a number of seconds since the epoch")
    return float(value)


def _jwt_header(parts: list[str]) -> dict[str, object] | None:
    """The JOSE header when ``parts`` look like a JWS (three segments, header a JSON object), else None."""
    if len(parts) != 3 or not parts[0] or not _B64URL.fullmatch(parts[0]):
        return None
    try:
        return _json_object(_segment(parts[0], "header"), "header")
    except TokenError:
        return None


def _unverified_claims(parts: list[str]) -> dict[str, object]:
    """The claims of a JWS whose signature the sandbox cannot check (an embedded token's outer JWT)."""
    return _json_object(_segment(parts[1], "claims"), "claims")


class TokenJudge:
    """Judges tokens presented to the sandbox (WebSocket ``access_token``/``accessToken``, REST Bearer)."""

    def __init__(
        self, keyring: Keyring, limits: SandboxLimits, *, issued: IssuedTokens, revocations: Revocations
    ) -> None:
        self._keyring = keyring
        self._limits = limits
        self._issued = issued
        self._revocations = revocations
        self._signers: dict[str, TokenSigner] = {}

    def _signer(self, key: AblyKey) -> TokenSigner:
        signer = self._signers.get(key.name)
        if signer is None or signer.key != key:
            signer = self._signers[key.name] = TokenSigner(key)
        return signer

    def judge(self, token: str, *, now_ms: int) -> JudgedCredential:
        """The grant of ``token`` at ``now_ms``.

        :raises AuthServerError: see the module table.
        """
        if not token:
            raise NotAuthenticatedError("No token given")
        if len(token) > self._limits.max_token_length:
            code = 40144 if looks_like_jwt(token) else 40145
            raise TokenError(f"Token is longer than {self._limits.max_token_length} characters", code=code)
        grant = self._opaque(token) if token.startswith(OPAQUE_PREFIX) else self._jwt(token, now_ms=now_ms)
        if grant.expires_ms is not None and grant.expires_ms <= now_ms:
            raise TokenError("Token expired", code=40142, status=401)
        if self._revocations.revoked(grant, now_ms=now_ms):
            raise TokenError("Token revoked", code=40141, status=401)
        return grant

    def _opaque(self, token: str) -> JudgedCredential:
        grant = self._issued.get(token)
        if grant is None:
            raise not_a_token()
        return grant

    def _jwt(self, token: str, *, now_ms: int, embedded: bool = False) -> JudgedCredential:
        parts = token.split(".")
        header = _jwt_header(parts)
        if header is None:
            raise not_a_token()
        inner = header.get(EMBEDDED_TOKEN)
        if inner is None and not embedded:
            inner = _unverified_claims(parts).get(EMBEDDED_TOKEN)
        if inner is not None and not embedded:
            return self._embedded(inner, parts, now_ms=now_ms)
        # NOTE: HS256 only, named explicitly: Ably accepts no other algorithm, and never "none".
        if header.get("alg") != "HS256":
            raise invalid_jwt("unsupported alg; only HS256 is accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise invalid_jwt("missing a key identifier (kid)")
        key = self._keyring.get(kid)
        if key is None and not self._keyring.has_app(kid.partition(".")[0]):
            raise AuthServerError("No application found with that id (the JWT's kid)", code=40400, status=404)
        if key is None:
            raise NotAuthenticatedError("Invalid credentials: kid names no key of this app")
        # Every segment is checked to be base64url (hence ASCII) before the signing input is built.
        claims_json = _segment(parts[1], "claims")
        signature = _segment(parts[2], "signature")
        signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
        if not self._signer(key).verifies(signing_input, signature):
            raise NotAuthenticatedError("Invalid credentials: JWT signature verification failed")
        claims = _json_object(claims_json, "claims")
        return self._grant(kid, claims, now_ms=now_ms)

    def _embedded(self, inner: object, parts: list[str], *, now_ms: int) -> JudgedCredential:
        """The grant of the Ably token inside an app's own JWT; the outer JWT's ``exp`` bounds it."""
        if not isinstance(inner, str) or not inner or len(inner) > self._limits.max_token_length:
            raise invalid_jwt(f"{EMBEDDED_TOKEN} must be an Ably token or Ably JWT")
        grant = (
            self._opaque(inner) if inner.startswith(OPAQUE_PREFIX) else self._jwt(inner, now_ms=now_ms, embedded=True)
        )
        outer_exp = _seconds(_unverified_claims(parts), "exp")
        if grant.expires_ms is not None and int(outer_exp * 1000) > grant.expires_ms:
            raise invalid_jwt("the outer JWT's exp is later than the embedded token's expiry")
        return grant

    def _grant(self, key_name: str, claims: dict[str, object], *, now_ms: int) -> JudgedCredential:
        """The grant the claims describe; expiry and revocation are judged by the caller."""
        issued_at, expires_at = _seconds(claims, "iat"), _seconds(claims, "exp")
        if expires_at <= issued_at:
            raise invalid_jwt("exp must be after iat")
        issued_ms, expires_ms = int(issued_at * 1000), int(expires_at * 1000)
        if issued_ms > now_ms + self._limits.clock_skew_ms:
            raise BadRequestError("issuedAt time must not be in the future", code=40001)
        longest = self._limits.max_token_ttl_ms
        if self._keyring.revocable(key_name):
            longest = min(longest, self._limits.max_revocable_token_ttl_ms)
        if expires_ms - issued_ms > longest:
            raise BadRequestError(f"Token lifetime exceeds {longest} ms", code=40003)
        capability_text = claims.get(CAPABILITY_CLAIM)
        if not isinstance(capability_text, str):
            raise invalid_jwt(f"{CAPABILITY_CLAIM} must be a string containing capability JSON")
        try:
            capability = Capability.parse(capability_text)
        except AuthServerError as exc:
            raise invalid_jwt(f"{CAPABILITY_CLAIM}: {exc.message}") from None
        client_id = claims.get(CLIENT_ID_CLAIM)
        if client_id is not None and (not isinstance(client_id, str) or not client_id):
            raise ClientIdError("Invalid token; clientId must be a non-empty string")
        revocation_key = claims.get(REVOCATION_KEY_CLAIM)
        if revocation_key is not None and not isinstance(revocation_key, str):
            raise invalid_jwt(f"{REVOCATION_KEY_CLAIM} must be a string")
        effective = capability.intersect(self._keyring.capability(key_name))
        if effective.is_empty():
            raise TokenError("Token capability does not intersect the key's capability", code=40160)
        return JudgedCredential(
            "jwt", key_name, effective, client_id, issued_ms, expires_ms, revocation_key, _channel_claims(claims)
        )


def _channel_claims(claims: dict[str, object]) -> TokenClaims:
    """The JWT's ``ably.channel.*`` user claims and ``ably.limits.publish.perAttachment.maxRate.*`` rates.

    :raises TokenError: 40144 for a value of the wrong type or an unusable resource name.
    """
    user: dict[str, str] = {}
    rates: dict[str, float] = {}
    for name, value in claims.items():
        if name.startswith(PUBLISH_RATE_PREFIX):
            resource = name[len(PUBLISH_RATE_PREFIX) :]
            # NOTE: compared before float() (a huge int would overflow it); NaN fails ``0 < value``.
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value or value == math.inf:
                raise invalid_jwt(f"{name} must be a positive number of messages per second")
            resource = _claim_resource(name, resource)
            if value <= MAX_PUBLISH_RATE:  # above: no limit at all (and the bucket arithmetic stays in range)
                rates[resource] = float(value)
        elif name.startswith(USER_CLAIM_PREFIX):
            # A lone surrogate (valid JSON) stamped on a message could not be sent as msgpack, nor kept.
            if not isinstance(value, str) or not is_wire_text(value):
                raise invalid_jwt(f"{name} must be a string of valid Unicode text")
            user[_claim_resource(name, name[len(USER_CLAIM_PREFIX) :])] = value
    return TokenClaims(user, rates) if user or rates else NO_CLAIMS


def _claim_resource(name: str, resource: str) -> str:
    try:
        check_resource(resource)
    except AuthServerError:
        raise invalid_jwt(f"{name[:80]!r} does not name a usable channel resource") from None
    return resource
