"""The audit trail of ``/auth``: one line for every token issued or refused, on the
``authserver.audit`` logger.

A line names who (clientId, role, identity source), what (capability, ttl in seconds, format) and,
for a refusal, the Ably error code. It never carries the token, the session cookie, a password or
the key's secret: only values the token's reader could see in its claims anyway.
"""

from __future__ import annotations

import logging

from .errors import AuthServerError
from .identity import Identity
from .logs import info_fields

log = logging.getLogger("authserver.audit")


def audit_issued(identity: Identity, fmt: str, capability: str, ttl_ms: int) -> None:
    fields = {
        "event": "token_issued",
        "clientId": identity.client_id,
        "role": identity.role,
        "source": identity.source,
        "format": fmt,
        "capability": capability,
        "ttl": ttl_ms // 1000,
    }
    info_fields(
        log,
        "token issued: clientId=%s role=%s source=%s format=%s ttl=%ds capability=%s",
        (identity.client_id, identity.role, identity.source, fmt, ttl_ms // 1000, capability),
        fields,
    )


def audit_refused(identity: Identity | None, exc: AuthServerError, fmt: str | None) -> None:
    fields = {
        "event": "token_refused",
        "clientId": identity.client_id if identity else None,
        "role": identity.role if identity else None,
        "source": identity.source if identity else None,
        "format": fmt if fmt in ("details", "jwt", "tokenrequest", "token-exchange") else None,
        "code": exc.code,
        "status": exc.status,
    }
    info_fields(
        log,
        "token refused: code=%d clientId=%s role=%s source=%s",
        (exc.code, fields["clientId"], fields["role"], fields["source"]),
        fields,
    )
