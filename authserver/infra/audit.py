"""The audit trail of ``/auth`` and ``/token``: one line for every token issued, and for every
refusal of a known identity, on the ``authserver.audit`` logger.

A line names who (clientId, role, identity source), what (capability, ttl in seconds, format) and,
for a refusal, the Ably error code. It never carries the token, the session cookie, a password or
the key's secret: only values the token's reader could see in its claims anyway.

A refusal with no identity behind it (no credentials, a forged, unknown, expired or ended session
cookie, a disabled account's session, a refused bearer token: anything refused before the caller
was authenticated) is what anyone can send at will: its lines go through a :class:`LogLimiter`,
five a minute per Ably code, and the next line of a code that gets through says how many were left
out (``suppressed``). The metrics count every refusal either way.
"""

from __future__ import annotations

import logging

from authserver.core.callers import Identity
from authserver.errors import AuthServerError
from authserver.infra.logs import FieldLines, LogLimiter, left_out, shown

log = logging.getLogger("authserver.audit")


_issued = FieldLines(
    log,
    "token issued: clientId=%s role=%s source=%s format=%s ttl=%ds capability=%s",
    ("event", "clientId", "role", "source", "format", "capability", "ttl"),
)
_refused = FieldLines(
    log,
    "token refused: code=%d clientId=%s role=%s source=%s",
    ("event", "clientId", "role", "source", "format", "code", "status"),
)


def audit_issued(identity: Identity, fmt: str, capability: str, ttl_ms: int) -> None:
    client_id, role, source, ttl = identity.client_id, identity.role, identity.source, ttl_ms // 1000
    _issued(
        (client_id, role, source, fmt, ttl, capability),
        ("token_issued", client_id, role, source, fmt, capability, ttl),
    )


#: A refusal with no identity, after others of its code were left out: the same line, saying how many.
_refused_after_some_left_out = FieldLines(
    log,
    "token refused: code=%d clientId=%s role=%s source=%s%s",
    ("event", "clientId", "role", "source", "format", "code", "status", "suppressed"),
)
#: The budget of the refusals with no identity behind them, per Ably code.
_anonymous = LogLimiter(burst=5, interval=60.0)


def audit_refused(identity: Identity | None, exc: AuthServerError, fmt: str | None) -> None:
    """The line of a refusal: always for a known ``identity``; for None (refused before the caller
    was authenticated), a few a minute per code, the rest counted into the next line."""
    fmt = fmt if fmt in ("details", "jwt", "tokenrequest", "token-exchange") else None
    if identity is not None:
        client_id, role, source = identity.client_id, identity.role, identity.source
        _refused(
            (exc.code, client_id, role, source), ("token_refused", client_id, role, source, fmt, exc.code, exc.status)
        )
        return
    suppressed = _anonymous.take(f"refused-{exc.code}")
    if suppressed is None:
        return
    if not suppressed:
        _refused((exc.code, None, None, None), ("token_refused", None, None, None, fmt, exc.code, exc.status))
        return
    _refused_after_some_left_out(
        (exc.code, None, None, None, left_out(suppressed)),
        ("token_refused", None, None, None, fmt, exc.code, exc.status, suppressed),
    )


_logout_accepted = FieldLines(
    log,
    "backchannel logout accepted: issuer=%s by=%s sessions_ended=%d",
    ("event", "issuer", "by", "sessions"),
)
_logout_refused = FieldLines(
    log,
    "backchannel logout refused: status=%d %s%s",
    ("event", "status", "reason", "suppressed"),
)
#: Refused logout tokens are what anyone can send at will: a few lines a minute, the rest counted.
_logout_refusals = LogLimiter(burst=20, interval=60.0)


def audit_logout_accepted(issuer: str, by: str, sessions: int) -> None:
    """A valid logout token carried out: its (trusted) issuer, whether by ``sid`` or ``sub``, how many
    sessions it ended. Never the token nor its subject or session id."""
    _logout_accepted((issuer, by, sessions), ("backchannel_logout_accepted", issuer, by, sessions))


def audit_logout_refused(status: int, reason: str) -> None:
    """A logout token refused (``reason`` names the failed check, never the token's contents)."""
    suppressed = _logout_refusals.take(f"logout-{status}")
    if suppressed is None:
        return
    _logout_refused(
        (status, reason, left_out(suppressed)),
        ("backchannel_logout_refused", status, reason, suppressed),
    )


_admin = FieldLines(
    log,
    "admin call: %s target=%s by %s %s: status %d",
    ("event", "operation", "target", "credential", "caller", "status"),
)
#: An admin call refused before any credential was accepted, saying how many like it were left out.
_admin_anonymous = FieldLines(
    log,
    "admin call: %s target=%s by %s %s: status %d%s",
    ("event", "operation", "target", "credential", "caller", "status", "suppressed"),
)


def audit_admin(
    operation: str, target: str | None, credential: str, caller: str, status: int, suppressed: int | None = None
) -> None:
    """The line of one admin API call: what (``operation``, e.g. ``users.create``), on what (a username,
    clientId or key name; never a password or key), by whom (``credential`` ``key`` or ``provider``, and
    the key's name and id or the provider token's subject) and how it ended (the HTTP status).

    The target and a provider's subject come from outside: in the text line each is JSON-quoted unless plain
    (:func:`~authserver.infra.logs.shown`), so none can pose as another field or line. ``suppressed``
    (for a call refused before any credential was accepted) is how many such lines were left out before.
    """
    values = ("admin_call", operation, target, credential, caller, status)
    # a key's "name (id)" is of the safe set by construction; a provider's subject is the provider's text
    args = (operation, shown(target), credential, caller if credential == "key" else shown(caller), status)
    if suppressed is None:
        _admin(args, values)
    else:
        _admin_anonymous((*args, left_out(suppressed)), (*values, suppressed))
