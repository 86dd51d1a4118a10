"""The audit trail of ``/auth``: one line for every token issued or refused, on the
``authserver.audit`` logger.

A line names who (clientId, role, identity source), what (capability, ttl in seconds, format) and,
for a refusal, the Ably error code. It never carries the token, the session cookie, a password or
the key's secret: only values the token's reader could see in its claims anyway.
"""

from __future__ import annotations

import logging

from authserver.core.callers import Identity
from authserver.errors import AuthServerError
from authserver.infra.logs import FieldLines

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


def audit_refused(identity: Identity | None, exc: AuthServerError, fmt: str | None) -> None:
    client_id, role, source = (identity.client_id, identity.role, identity.source) if identity else (None, None, None)
    fmt = fmt if fmt in ("details", "jwt", "tokenrequest", "token-exchange") else None
    _refused((exc.code, client_id, role, source), ("token_refused", client_id, role, source, fmt, exc.code, exc.status))
