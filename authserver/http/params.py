"""Ably token params as they arrive from an authUrl request (query, form or JSON body)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from authserver.core.capabilities import Capability
from authserver.core.issuance import TokenParams
from authserver.errors import BadRequestError

KNOWN = frozenset({"clientId", "client_id", "ttl", "capability", "format"})
FORMATS = ("details", "jwt", "tokenrequest")
_TTL = re.compile(r"[0-9]{1,15}")
MAX_TTL_PARAM_MS = 10 * 365 * 86400 * 1000
_NONE_GIVEN = (TokenParams(), None)


def known_params(pairs: Iterable[tuple[str, str]], *, source: str) -> dict[str, str]:
    """The token params among ``pairs``; unknown names (``rnd``, app params) are ignored.

    :raises BadRequestError: a token param given twice in the same ``source`` (query or body).
    """
    seen: dict[str, str] = {}
    for name, value in pairs:
        if name in KNOWN:
            if name in seen:
                raise BadRequestError(f"token param {name!r} is repeated in the {source}")
            seen[name] = value
    return seen


def parse_token_params(seen: dict[str, str]) -> tuple[TokenParams, str | None]:
    """Check the token params and the response ``format``.

    :raises BadRequestError: a ttl that is not a positive whole number of ms, conflicting
        ``clientId``/``client_id``, an empty clientId, an unknown format.
    :raises CapabilityError: a capability that is not valid capability JSON.
    """
    if not seen:
        return _NONE_GIVEN  # the common case (no query string): the params are immutable
    client_id = seen.get("clientId")
    other = seen.get("client_id")
    if client_id is not None and other is not None and client_id != other:
        raise BadRequestError("token params 'clientId' and 'client_id' disagree")
    client_id = client_id if client_id is not None else other
    if client_id == "":
        raise BadRequestError("token param 'clientId' is empty", code=40012)
    ttl: int | None = None
    raw_ttl = seen.get("ttl")
    if raw_ttl:
        if not _TTL.fullmatch(raw_ttl) or not 0 < int(raw_ttl) <= MAX_TTL_PARAM_MS:
            raise BadRequestError("token param 'ttl' must be a positive whole number of milliseconds", code=40003)
        ttl = int(raw_ttl)
    raw_capability = seen.get("capability")
    capability = Capability.parse(raw_capability) if raw_capability else None
    fmt = seen.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise BadRequestError(f"format must be one of {', '.join(FORMATS)}")
    return TokenParams(client_id, ttl, capability), fmt
