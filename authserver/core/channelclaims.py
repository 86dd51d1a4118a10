"""Per-channel JWT claims a role's tokens carry: user claims and publish-rate limits. Pure.

A role may declare (policy file, see ``default_policy.toml``)::

    [roles.member.channel_claims]          # -> ably.channel.<resource> = "<string>"
    "chat:*" = '{"role":"member","email":"{claim:email}"}'
    "private:{clientId}" = "owner"

    [roles.member.publish_rate]            # -> ably.limits.publish.perAttachment.maxRate.<resource> = <number>
    "chat:*" = 5                           # messages per second on each attached chat channel
    "*" = 0.1                              # one message per 10 s anywhere else

Resources are capability resource patterns and take ``{clientId}`` exactly as capability templates do
(:func:`~authserver.core.capabilities.expand_resource`). A user claim's value may contain ``{clientId}`` and
``{claim:NAME}``, a claim of the caller's upstream OpenID Connect identity (only the names in
:data:`UPSTREAM_CLAIMS`); every other brace is literal text, so values may be JSON. Both are filled in one
pass: filled-in text is never read as a placeholder (``{claim:{clientId}}`` gives ``{claim:alice}``, text).
An upstream value is inserted JSON-escaped (without quotes), so it is safe inside a JSON string in the
value. When the caller has no such upstream claim (an account, a provider login session, or a provider
that did not send it), the user claim that needs it is left out of the token: a receiver never sees a
half-filled claim.

Claim names always begin with ``ably.``, so a policy can never set or replace a reserved ``x-ably-``
claim (``iat``, ``exp`` and ``x-ably-*`` stay the issuer's). These claims exist only in Ably JWTs: a
TokenRequest (an Ably native token) cannot carry them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from authserver.core.capabilities import PLACEHOLDER, check_resource, expand_resource, most_specific
from authserver.core.clientids import MAX_CLIENT_ID_CHARS
from authserver.core.keys import AblyKey
from authserver.core.tokens import REVOCATION_KEY_CLAIM, TokenSigner
from authserver.errors import CapabilityError

USER_CLAIM_PREFIX = "ably.channel."
PUBLISH_RATE_PREFIX = "ably.limits.publish.perAttachment.maxRate."
#: Upstream identity claims a user claim may quote with ``{claim:NAME}`` (strings only).
UPSTREAM_CLAIMS = frozenset({"sub", "email", "name", "preferred_username", "given_name", "family_name", "nickname"})
#: A longer upstream value counts as missing (it would make the worst-case JWT size unbounded).
MAX_UPSTREAM_CLAIM_CHARS = 128
MAX_CLAIM_VALUE_CHARS = 1024
#: The highest publish rate (messages per second) a JWT may claim; the sandbox takes a higher one for no limit.
MAX_PUBLISH_RATE = 1e9
#: Ably's guidance: keep a JWT under about 8 KiB (larger ones may not fit in a WebSocket URL or header).
MAX_JWT_BYTES = 8192
#: The longest ``x-ably-revocation-key``: ``u:<clientId>`` (issuance) or ``s:`` and 32 hex digits (sessions).
MAX_REVOCATION_KEY_CHARS = 2 + MAX_CLIENT_ID_CHARS
#: Key names are ``appId.keyId`` (about 14 characters on Ably); the size check assumes one this long.
ASSUMED_KEY_NAME_CHARS = 64

_UPSTREAM = re.compile(r"\{claim:([^{}]*)\}")
#: Either placeholder of a user claim value, so both are filled in one pass (filled text is never rescanned).
_PLACEHOLDERS = re.compile(re.escape(PLACEHOLDER) + "|" + _UPSTREAM.pattern)
#: The character whose escaped form is longest in a claim value (12 bytes in JSON, 14 once inserted).
_WIDEST_CHAR = "\U0001f600"

#: Characters of the probe clientIds the size check tries (the longest clientId of one repeated character).
_PROBE_CHARS = "xyzwvutsrqponmlkjihgfedcba0123456789"

_V = TypeVar("_V")


class ClaimTemplateError(ValueError):
    """A channel claim or publish rate that cannot be used (the message names the field)."""


@dataclass(frozen=True, slots=True)
class ChannelClaims:
    """A role's channel claims: resource template -> value template, and resource template -> rate."""

    user: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    publish_rate: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def __bool__(self) -> bool:
        return bool(self.user or self.publish_rate)

    def upstream_names(self) -> frozenset[str]:
        """The upstream claims the values quote."""
        return frozenset(name for value in self.user.values() for name in _UPSTREAM.findall(value))

    def for_caller(self, client_id: str, upstream: Mapping[str, str]) -> dict[str, str | float]:
        """The JWT claims for one caller (``client_id`` already checked).

        A user claim quoting an upstream claim the caller lacks is left out. When two resources become
        one after substitution, the one written without ``{clientId}`` wins.
        """
        out: dict[str, str | float] = {}
        for prefix, table in ((USER_CLAIM_PREFIX, self.user), (PUBLISH_RATE_PREFIX, self.publish_rate)):
            # Literal resources first: setdefault keeps them over templated ones that expand to the same name.
            for resource in sorted(table, key=lambda r: PLACEHOLDER in r):
                value: str | float | None = table[resource]
                if isinstance(value, str):
                    value = fill_value(value, client_id, upstream)
                if value is not None:
                    out.setdefault(prefix + expand_resource(resource, client_id), value)
        return out


def value_for(table: Mapping[str, _V], channel: str) -> _V | None:
    """The value of the most specific resource of ``table`` that matches ``channel`` (as Ably picks the
    user claim and the publish rate), or None. See :func:`~authserver.core.capabilities.specificity`."""
    resource = most_specific(table, channel) if table else None
    return None if resource is None else table[resource]


def for_channel(claims: Mapping[str, str | float], channel: str) -> dict[str, str | float]:
    """What a token's channel claims mean on one channel: ``userClaim`` and ``publishRate``, when set."""
    out: dict[str, str | float] = {}
    for prefix, key in ((USER_CLAIM_PREFIX, "userClaim"), (PUBLISH_RATE_PREFIX, "publishRate")):
        table = {name[len(prefix) :]: value for name, value in claims.items() if name.startswith(prefix)}
        value = value_for(table, channel)
        if value is not None:
            out[key] = value
    return out


def fill_value(template: str, client_id: str, upstream: Mapping[str, str]) -> str | None:
    """A user claim value for one caller; ``None`` when it quotes an upstream claim the caller lacks."""
    missing = False

    def placeholder_value(match: re.Match[str]) -> str:
        nonlocal missing
        if match.group(1) is None:
            return client_id
        value = upstream.get(match.group(1))
        if value is None or len(value) > MAX_UPSTREAM_CLAIM_CHARS:
            missing = True
            return ""
        return json.dumps(value, ensure_ascii=False)[1:-1]

    # NOTE: one pass: a clientId filled into "{claim:{clientId}}" must not become a placeholder itself.
    filled = _PLACEHOLDERS.sub(placeholder_value, template)
    return None if missing else filled


def is_unicode_text(value: str) -> bool:
    """Whether ``value`` has no lone surrogate (JSON can write one; msgpack and UTF-8 cannot carry it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_channel_claims(user: object, publish_rate: object) -> ChannelClaims:
    """Validate a role's ``channel_claims`` and ``publish_rate`` tables (either may be ``None``).

    :raises ClaimTemplateError: naming the table and resource at fault.
    """
    users: dict[str, str] = {}
    for resource, value in _table(user, "channel_claims").items():
        if not isinstance(value, str):
            raise ClaimTemplateError(f"channel_claims for {resource!r} must be a string (JSON text is fine)")
        if not is_unicode_text(value):
            raise ClaimTemplateError(f"channel_claims for {resource!r} must be valid Unicode text (no lone surrogates)")
        if len(value) > MAX_CLAIM_VALUE_CHARS:
            raise ClaimTemplateError(
                f"channel_claims for {resource!r} is longer than {MAX_CLAIM_VALUE_CHARS} characters"
            )
        for name in _UPSTREAM.findall(value):
            if name not in UPSTREAM_CLAIMS:
                allowed = ", ".join(sorted(UPSTREAM_CLAIMS))
                raise ClaimTemplateError(
                    f"channel_claims for {resource!r} quotes {{claim:{name}}}; upstream claims allowed: {allowed}"
                )
        users[resource] = value
    rates: dict[str, float] = {}
    for resource, rate in _table(publish_rate, "publish_rate").items():
        # NOTE: compared, not math.isfinite(): a JSON policy's huge integer would overflow a float; NaN fails too.
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= MAX_PUBLISH_RATE:
            raise ClaimTemplateError(
                f"publish_rate for {resource!r} must be a positive number of messages per second, "
                f"at most {MAX_PUBLISH_RATE:g} (0.1 = one per 10 s)"
            )
        rates[resource] = rate
    return ChannelClaims(MappingProxyType(users), MappingProxyType(rates))


def _table(raw: object, table: str) -> Mapping[str, object]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ClaimTemplateError(f"{table} must be a table of resource = value")
    for resource in raw:
        try:
            check_resource(resource)
            # A probe clientId: the expanded name must still be a usable resource.
            check_resource(expand_resource(resource, "x" * MAX_CLIENT_ID_CHARS))
        except CapabilityError as exc:
            raise ClaimTemplateError(f"{table}: {exc.message}") from None
    return raw


def worst_case_jwt_bytes(capability_json: str, claims: ChannelClaims) -> int:
    """The length of the largest JWT a role can be issued (its full capability): the longest clientId
    and key name, every claim with every upstream value at its longest and widest, a revocation key,
    and 11-digit times, signed the way :class:`~authserver.core.tokens.TokenSigner` signs."""
    widest = {name: _WIDEST_CHAR * MAX_UPSTREAM_CLAIM_CHARS for name in UPSTREAM_CLAIMS}
    every = len(claims.user) + len(claims.publish_rate)
    # A probe clientId that merges no templated resource with a literal one, so every claim is counted.
    for char in _PROBE_CHARS:
        client_id = char * MAX_CLIENT_ID_CHARS
        extra: dict[str, object] = dict(claims.for_caller(client_id, widest))
        if len(extra) == every:
            break
    extra[REVOCATION_KEY_CLAIM] = "x" * MAX_REVOCATION_KEY_CHARS
    key = AblyKey("k" * (ASSUMED_KEY_NAME_CHARS // 2) + "." + "k" * (ASSUMED_KEY_NAME_CHARS // 2 - 1), "size")
    token = TokenSigner(key).sign(
        capability=capability_json, client_id=client_id, issued_at=10**10, expires_at=10**10, extra_claims=extra
    )
    return len(token.encode("ascii"))
