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
from authserver.infra.logs import FieldLines, LogLimiter, left_out

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
