"""ClientIds that are safe to be identities and to expand into capability templates."""

from __future__ import annotations

import json
import re

from authserver.errors import ClientIdError

MAX_CLIENT_ID_CHARS = 64
_ECHO_CHARS = 64  # user-supplied text echoed in an error message is cut to this length

#: Safe clientIds: ASCII letters, digits and ``_ . @ + -``; 1..64 chars; starts with a letter or digit.
#: Deliberately excludes ``*``, ``:``, ``[``, ``]``, ``{``, ``}``, whitespace, ``/`` and everything else, so
#: substituting a clientId into ``private:{clientId}`` can never add a wildcard, a segment or a qualifier.
#: Anchored with ``\A``/``\Z`` so ``match`` is as strict as ``fullmatch`` (``$`` would accept a trailing newline).
SAFE_CLIENT_ID: re.Pattern[str] = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.@+\-]{0,63}\Z")


def _quote(text: str) -> str:
    """Quote user-supplied text for an error message: JSON escaping keeps control characters out of logs."""
    return json.dumps(text[:_ECHO_CHARS] + ("..." if len(text) > _ECHO_CHARS else ""))


def is_safe_client_id(value: str) -> bool:
    """Whether ``value`` matches :data:`SAFE_CLIENT_ID`."""
    return SAFE_CLIENT_ID.match(value) is not None


def check_client_id(value: str) -> str:
    """Return ``value`` if it is a safe, concrete clientId.

    :raises ClientIdError: empty, the ``"*"`` wildcard, longer than 64 chars, not starting with an ASCII
        letter or digit, or containing characters outside ``A-Z a-z 0-9 _ . @ + -``.
    """
    if not value:
        raise ClientIdError("clientId must not be empty")
    if value == "*":
        raise ClientIdError('clientId "*" is a wildcard and cannot be used as an identity')
    if len(value) > MAX_CLIENT_ID_CHARS:
        raise ClientIdError(f"clientId is longer than {MAX_CLIENT_ID_CHARS} characters")
    if not (value[0].isascii() and value[0].isalnum()):
        raise ClientIdError(f"clientId {_quote(value)} must start with an ASCII letter or digit")
    if not is_safe_client_id(value):
        raise ClientIdError(
            f"clientId {_quote(value)} contains characters outside the safe set (letters, digits, _ . @ + -)"
        )
    return value
