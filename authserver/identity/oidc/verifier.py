"""Checks an upstream JWT: algorithm, key, signature, ``iss``, ``aud``, ``exp``, ``nbf``, ``iat``.

Pure: the key comes in as a PyJWT :class:`~jwt.PyJWK`, the time as a number. Every refusal is a
:class:`~authserver.errors.NotAuthenticatedError` (401, 40101) whose message names the check that
failed and never contains the token.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from authserver.core.issuers import KEY_TYPES, UpstreamIssuer
from authserver.errors import AuthServerError, NotAuthenticatedError

#: Longer bearer tokens are refused before they are parsed.
MAX_TOKEN_CHARS = 16 * 1024


class BearerRefused(NotAuthenticatedError):
    """A bearer token that did not pass a check (401, 40101: Ably clients retry later)."""


@dataclass(frozen=True, slots=True)
class Unverified:
    """What a token says about itself before any check: which issuer and key to ask."""

    algorithm: str
    kid: str | None
    issuer: str


def _refuse(check: str) -> BearerRefused:
    return BearerRefused(f"bearer token refused: {check}")


def peek(token: str) -> Unverified:
    """Header and ``iss`` of a token, unverified (to pick the issuer and key), with the algorithm checked
    against every algorithm any issuer may allow.

    :raises BearerRefused: not a JWT, no ``iss``, or an algorithm that is never allowed (``none``, HMAC).
    """
    if len(token) > MAX_TOKEN_CHARS:
        raise _refuse(f"longer than {MAX_TOKEN_CHARS} characters")
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
        raise _refuse("malformed (not a signed JWT)") from None
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in KEY_TYPES:
        shown = json.dumps(algorithm)[:20] if isinstance(algorithm, str) else "missing"
        raise _refuse(f"algorithm {shown} is not allowed (asymmetric algorithms only)")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _refuse("kid is not a string")
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise _refuse("no iss claim")
    return Unverified(algorithm, kid, issuer)


def check_key(key: jwt.PyJWK, algorithm: str) -> None:
    """The key must be of the type the algorithm needs, and not declared for another algorithm.

    :raises BearerRefused: a mismatch.
    """
    kty, crv = KEY_TYPES[algorithm]
    data = key._jwk_data  # the JWK PyJWK was built from
    if key.key_type != kty or (crv is not None and data.get("crv") != crv):
        raise _refuse(f"algorithm {algorithm} does not match the key's type ({key.key_type})")
    declared = data.get("alg")
    if declared is not None and declared != algorithm:
        raise _refuse(f"algorithm {algorithm} is not the one the key is for ({declared})")


def verify(token: str, upstream: UpstreamIssuer, key: jwt.PyJWK, algorithm: str, now: float) -> dict[str, Any]:
    """The token's claims once every check has passed.

    :param algorithm: the header's algorithm (from :func:`peek`).
    :param now: seconds since the epoch.
    :raises BearerRefused: naming the failed check.
    """
    if algorithm not in upstream.algorithms:
        raise _refuse(f"algorithm {algorithm} is not allowed for {upstream.issuer}")
    check_key(key, algorithm)
    claims = decode(token, upstream, key, algorithm, audience=upstream.audience, require=("iss", "aud", "exp"))
    check_times(claims, now, upstream.leeway)
    return claims


def decode(
    token: str,
    upstream: UpstreamIssuer,
    key: jwt.PyJWK,
    algorithm: str,
    *,
    audience: tuple[str, ...],
    require: tuple[str, ...],
    refuse: Callable[[str], AuthServerError] = _refuse,
) -> dict[str, Any]:
    """The claims, once the signature, ``iss``, ``aud`` (any of ``audience``) and the presence of the claims
    ``require`` names are checked (times are the caller's, against the injected clock).

    :raises AuthServerError: ``refuse(<the failed check>)``.
    """
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key.key,
            algorithms=[algorithm],
            audience=list(audience),
            issuer=upstream.issuer,
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "require": list(require)},
        )
    except jwt.InvalidSignatureError:
        raise refuse("signature does not verify") from None
    except jwt.InvalidAudienceError:
        raise refuse(f"audience is not {' or '.join(audience)}") from None
    except jwt.InvalidIssuerError:
        raise refuse(f"issuer is not {upstream.issuer}") from None
    except jwt.MissingRequiredClaimError as exc:
        raise refuse(f"no {exc.claim} claim") from None
    except jwt.InvalidAlgorithmError:
        raise refuse(f"algorithm {algorithm} does not match the key") from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise refuse("malformed (claims do not decode)") from None
    return claims


def number_claim(claims: dict[str, Any], name: str, refuse: Callable[[str], AuthServerError] = _refuse) -> float | None:
    """Claim ``name`` as a number of seconds, None when absent.

    JSON as Python reads it takes ``NaN`` and ``Infinity``: every comparison with a NaN is false (an
    ``exp`` of NaN would never expire), so a number that is not finite is refused like a string.

    :raises AuthServerError: ``refuse(...)`` for anything but a finite number.
    """
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise refuse(f"{name} is not a number")
    if not math.isfinite(value):
        raise refuse(f"{name} is not a finite number")
    return float(value)


def check_times(claims: dict[str, Any], now: float, leeway: float) -> None:
    """``exp`` (required), ``nbf`` and ``iat`` against ``now``, each with ``leeway`` seconds of slack;
    ``auth_time``, where present, a finite number too (a back-channel logout is matched against it).

    :raises BearerRefused: expired, not yet valid, issued in the future, or a time that is no finite number.
    """
    number_claim(claims, "auth_time")
    exp = number_claim(claims, "exp")
    if exp is None:
        raise _refuse("no exp claim")
    if now >= exp + leeway:
        raise _refuse("expired")
    nbf = number_claim(claims, "nbf")
    if nbf is not None and now + leeway < nbf:
        raise _refuse("not valid yet (nbf)")
    iat = number_claim(claims, "iat")
    if iat is not None and now + leeway < iat:
        raise _refuse("issued in the future (iat)")
