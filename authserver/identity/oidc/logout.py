"""OpenID Connect Back-Channel Logout 1.0: the logout token (section 2.4) and its validation (2.6).

Pure: the key comes in as a PyJWT :class:`~jwt.PyJWK`, the time as a number. A logout token is a JWT
signed by a trusted provider with the keys of its bearer tokens, for an audience of the provider's
client ids for authserver (:attr:`~authserver.core.issuers.UpstreamIssuer.logout_audience`), with
``iss``, ``aud``, a recent ``iat``, a ``jti``, the back-channel logout event, ``sub`` and/or ``sid``,
and never a ``nonce`` (so an ID token can never pass for one). Every refusal is a
:class:`LogoutTokenRefused` (400) whose message names the check and never quotes the token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

from authserver.core.issuers import UpstreamIssuer
from authserver.errors import BadRequestError
from authserver.identity.oidc.verifier import BearerRefused, Unverified, check_key, decode, number_claim, peek

#: The event member a logout token's ``events`` claim must have (section 2.4).
EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: The oldest ``iat`` accepted, in seconds (plus the issuer's leeway): a logout token is sent as soon as
#: it is made; older ones are refused, so the ids of those seen need be kept only this long.
MAX_AGE = 300
#: The ``typ`` headers accepted: none, plain JWT, or the explicit type of section 2.4.
TYPES = frozenset({"JWT", "logout+jwt", "application/logout+jwt"})
MAX_CLAIM_CHARS = 255


class LogoutTokenRefused(BadRequestError):
    """A logout token that did not pass a check (400 ``invalid_request``): nothing was logged out."""


@dataclass(frozen=True, slots=True)
class LogoutClaims:
    """What a valid logout token says: whose sessions end (``sid`` where given, else every one of ``sub``)."""

    issuer: str
    sub: str | None
    sid: str | None
    jti: str
    iat: float


def refused(check: str) -> LogoutTokenRefused:
    return LogoutTokenRefused(f"logout token refused: {check}")


def _as_logout(exc: BearerRefused) -> LogoutTokenRefused:
    return refused(exc.message.removeprefix("bearer token refused: "))


def peek_logout(token: str) -> Unverified:
    """Header and ``iss``, unverified (to pick the issuer and key).

    :raises LogoutTokenRefused: not a signed JWT, an algorithm never allowed, a ``typ`` of another kind of token.
    """
    try:
        header = peek(token)
        typ = jwt.get_unverified_header(token).get("typ")
    except BearerRefused as exc:
        raise _as_logout(exc) from None
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
        raise refused("malformed (not a signed JWT)") from None
    if typ is not None and (not isinstance(typ, str) or typ not in TYPES):
        raise refused("its typ header names another kind of token")
    return header


def _string(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_CLAIM_CHARS:
        raise refused(f"{name} is not a string of 1-{MAX_CLAIM_CHARS} characters")
    return value


def _decode(token: str, upstream: UpstreamIssuer, key: jwt.PyJWK, algorithm: str) -> dict[str, Any]:
    try:
        check_key(key, algorithm)
    except BearerRefused as exc:
        raise _as_logout(exc) from None
    return decode(
        token, upstream, key, algorithm, audience=upstream.logout_audience, require=("iss", "aud"), refuse=refused
    )


def _times(claims: dict[str, Any], now: float, leeway: float) -> float:
    iat = number_claim(claims, "iat", refused)
    exp = number_claim(claims, "exp", refused)
    number_claim(claims, "auth_time", refused)  # none is expected, but no NaN may pass either
    if iat is None:
        raise refused("no iat claim")
    if now + leeway < iat:
        raise refused("issued in the future (iat)")
    if now - iat > MAX_AGE + leeway:
        raise refused(f"too old (iat more than {MAX_AGE} s ago)")
    if exp is not None and now >= exp + leeway:
        raise refused("expired (exp)")
    return iat


def check_logout(token: str, upstream: UpstreamIssuer, key: jwt.PyJWK, algorithm: str, now: float) -> LogoutClaims:
    """The claims of a valid logout token (section 2.6, steps 3-8; the ``jti`` replay check is the caller's).

    :param algorithm: the header's algorithm (from :func:`peek_logout`).
    :raises LogoutTokenRefused: naming the failed check.
    """
    if algorithm not in upstream.algorithms:
        raise refused(f"algorithm {algorithm} is not allowed for {upstream.issuer}")
    claims = _decode(token, upstream, key, algorithm)
    iat = _times(claims, now, upstream.leeway)
    jti = _string(claims, "jti")
    if jti is None:
        raise refused("no jti claim")
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(EVENT), dict):
        raise refused(f"events has no {EVENT} member (an object)")
    if "nonce" in claims:
        raise refused("it has a nonce claim (a logout token never does)")
    sub, sid = _string(claims, "sub"), _string(claims, "sid")
    if sub is None and sid is None:
        raise refused("neither sub nor sid")
    return LogoutClaims(upstream.issuer, sub, sid, jti, iat)
