"""What an upstream OpenID Connect provider is trusted for. Pure: no I/O, no environment."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authserver.core.clientids import MAX_CLIENT_ID_CHARS, is_safe_client_id

#: Asymmetric algorithms only: ``none`` and every HMAC algorithm are refused, so a provider's public key
#: can never be used as an HMAC secret (key confusion).
DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
#: The JWK key type (and curve) each allowed algorithm needs.
KEY_TYPES: Mapping[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}
DEFAULT_LEEWAY = 30
MAX_LEEWAY = 300
_ISSUER_FIELDS = frozenset(
    {
        "issuer",
        "audience",
        "client_id_claim",
        "client_id_prefix",
        "role_claim",
        "role",
        "algorithms",
        "leeway",
        "name",
        "backchannel_logout_audience",
    }
)


class UpstreamConfigError(ValueError):
    """An issuer setting that cannot be used (the message names the field)."""


@dataclass(frozen=True, slots=True)
class UpstreamIssuer:
    """One trusted provider.

    :ivar issuer: the exact ``iss`` of its tokens (also where discovery is: ``{issuer}/.well-known/...``).
    :ivar audience: accepted ``aud`` values (a token must name at least one).
    :ivar client_id_claim: the claim whose value becomes the Ably clientId (default ``sub``).
    :ivar client_id_prefix: prepended to that value (``"acme."``), so that two providers' users never
        share a clientId; "" for none (at most one trusted provider may have none).
    :ivar role_claim: optional claim (a string or a list of strings) naming policy roles.
    :ivar role: the role of this provider's callers when the role claim names none (default: the
        policy's ``default_role``).
    :ivar logout_audience: the ``aud`` values accepted in this provider's back-channel logout tokens
        (the client ids it knows authserver by); empty: back-channel logout is off for it.
    """

    issuer: str
    audience: tuple[str, ...]
    client_id_claim: str = "sub"
    role_claim: str | None = None
    role: str | None = None
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway: int = DEFAULT_LEEWAY
    name: str = ""
    client_id_prefix: str = ""
    logout_audience: tuple[str, ...] = ()

    def client_id_for(self, value: str) -> str:
        """The clientId of the user whose clientId claim is ``value`` (the safe-set check comes after)."""
        return self.client_id_prefix + value

    @property
    def source(self) -> str:
        """The identity source of its callers (``oidc:<issuer>``), as sessions and ``/session`` show it."""
        return f"oidc:{self.issuer}"

    @property
    def display_name(self) -> str:
        return self.name or (urlsplit(self.issuer).hostname or self.issuer)

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(value: str, what: str) -> str:
    """An https URL, or http on a loopback host (development and tests).

    :raises UpstreamConfigError: anything else.
    """
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise UpstreamConfigError(f"{what} must be an https:// URL")
    if parts.query or parts.fragment:
        raise UpstreamConfigError(f"{what} must not have a query or fragment")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise UpstreamConfigError(f"{what} must use https (plain http only on a loopback host)")
    return value


def make_issuer(
    *,
    issuer: str,
    audience: str | Sequence[str] | None,
    client_id_claim: str | None = None,
    role_claim: str | None = None,
    role: str | None = None,
    algorithms: Sequence[str] | None = None,
    leeway: int | None = None,
    name: str | None = None,
    client_id_prefix: str | None = None,
    logout_audience: str | Sequence[str] | None = None,
) -> UpstreamIssuer:
    """A validated :class:`UpstreamIssuer`.

    :raises UpstreamConfigError: naming the field at fault.
    """
    check_url(issuer, "issuer")
    audiences = (audience,) if isinstance(audience, str) else tuple(audience or ())
    if not audiences or not all(isinstance(a, str) and a for a in audiences):
        raise UpstreamConfigError(f"issuer {issuer}: an audience is required (the aud your tokens carry)")
    algs = tuple(algorithms) if algorithms is not None else DEFAULT_ALGORITHMS
    unknown = [a for a in algs if a not in KEY_TYPES]
    if not algs or unknown:
        refused = ", ".join(map(str, unknown)) or "(none)"
        raise UpstreamConfigError(
            f"issuer {issuer}: algorithms {refused} are not allowed (asymmetric only: {', '.join(KEY_TYPES)})"
        )
    for label, claim in (("client_id_claim", client_id_claim), ("role_claim", role_claim)):
        if claim is not None and (not isinstance(claim, str) or not claim.strip()):
            raise UpstreamConfigError(f"issuer {issuer}: {label} must be a claim name")
    bad_leeway = not isinstance(leeway, int) or isinstance(leeway, bool) or not 0 <= leeway <= MAX_LEEWAY
    if leeway is not None and bad_leeway:
        raise UpstreamConfigError(f"issuer {issuer}: leeway must be 0..{MAX_LEEWAY} seconds")
    if client_id_prefix and not _usable_prefix(client_id_prefix):
        raise UpstreamConfigError(
            f"issuer {issuer}: client_id_prefix must be 1-{MAX_CLIENT_ID_CHARS - 1} of the clientId safe set"
            " (letters, digits, _ . @ + -), starting with a letter or digit, e.g. 'acme.'"
        )
    logout = (logout_audience,) if isinstance(logout_audience, str) else tuple(logout_audience or ())
    if not all(isinstance(a, str) and a for a in logout):
        raise UpstreamConfigError(f"issuer {issuer}: backchannel_logout_audience must be client ids (strings)")
    return UpstreamIssuer(
        issuer=issuer,
        audience=audiences,
        client_id_claim=client_id_claim or "sub",
        role_claim=role_claim or None,
        role=role or None,
        algorithms=algs,
        leeway=DEFAULT_LEEWAY if leeway is None else leeway,
        name=name or "",
        client_id_prefix=client_id_prefix or "",
        logout_audience=logout,
    )


def _usable_prefix(prefix: object) -> bool:
    return isinstance(prefix, str) and len(prefix) < MAX_CLIENT_ID_CHARS and is_safe_client_id(prefix)


def check_distinct_client_ids(issuers: Iterable[UpstreamIssuer]) -> None:
    """Two trusted issuers can never mint the same clientId: every one but one has a ``client_id_prefix``,
    and no prefix begins another (with ``acme.`` and ``acme.eu.``, ``eu.bob`` of the first and ``bob``
    of the second would both be ``acme.eu.bob``). What the unprefixed one may not mint is
    :func:`foreign_prefix`'s.

    :raises UpstreamConfigError: naming the issuers at fault.
    """
    issuers = list(issuers)
    plain = [i.issuer for i in issuers if not i.client_id_prefix]
    if len(plain) > 1:
        raise UpstreamConfigError(
            f"issuers {', '.join(plain)} all map a claim straight to the clientId, so their users could share"
            " a clientId (its private channels, presence and revocations): give each but one a client_id_prefix"
            " ([[issuers]] client_id_prefix; OIDC_CLIENT_ID_PREFIX for OIDC_ISSUER)"
        )
    prefixed = [i for i in issuers if i.client_id_prefix]
    for one in prefixed:
        for other in prefixed:
            if one is not other and other.client_id_prefix.startswith(one.client_id_prefix):
                raise UpstreamConfigError(
                    f"issuers {one.issuer} and {other.issuer}: client_id_prefix {other.client_id_prefix!r} begins"
                    f" with {one.client_id_prefix!r}, so their users could share a clientId: no prefix may begin"
                    " another"
                )


def foreign_prefix(client_id: str, upstream: UpstreamIssuer, issuers: Iterable[UpstreamIssuer]) -> str | None:
    """The prefix of another trusted issuer that ``client_id``, minted by the unprefixed ``upstream``,
    begins with (its user would share a clientId with that issuer's), or None."""
    if upstream.client_id_prefix:
        return None  # distinct prefixes, none beginning another: nothing to collide with
    for other in issuers:
        if other.issuer != upstream.issuer and other.client_id_prefix and client_id.startswith(other.client_id_prefix):
            return other.client_id_prefix
    return None


def parse_issuer_table(data: Any, index: int) -> UpstreamIssuer:
    """One ``[[issuers]]`` table of the policy file.

    :raises UpstreamConfigError: naming the table and field at fault.
    """
    if not isinstance(data, Mapping):
        raise UpstreamConfigError(f"issuers[{index}] must be a table/object")
    unknown = set(data) - _ISSUER_FIELDS
    if unknown:
        raise UpstreamConfigError(f"issuers[{index}] has unknown field(s): {', '.join(sorted(map(str, unknown)))}")
    issuer = data.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise UpstreamConfigError(f"issuers[{index}] needs an issuer URL")
    for name in ("client_id_claim", "client_id_prefix", "role_claim", "role", "name"):
        if name in data and not isinstance(data[name], str):
            raise UpstreamConfigError(f"issuers[{index}].{name} must be a string")
    for name in ("algorithms", "backchannel_logout_audience"):
        value = data.get(name)
        if name == "backchannel_logout_audience" and isinstance(value, str):
            continue
        if value is not None and (not isinstance(value, list) or not all(isinstance(a, str) for a in value)):
            raise UpstreamConfigError(f"issuers[{index}].{name} must be a list of strings")
    return make_issuer(
        issuer=issuer,
        audience=data.get("audience"),
        client_id_claim=data.get("client_id_claim"),
        role_claim=data.get("role_claim"),
        role=data.get("role"),
        algorithms=data.get("algorithms"),
        leeway=data.get("leeway"),
        name=data.get("name"),
        client_id_prefix=data.get("client_id_prefix"),
        logout_audience=data.get("backchannel_logout_audience"),
    )
