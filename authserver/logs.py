"""Logging set-up, with a last line of defence that scrubs credentials from every record."""

from __future__ import annotations

import logging
import re

# access_token=..., accessToken=..., key=appId.keyId:secret in URLs; Bearer/Basic header values;
# anything that looks like a JWT.
_PATTERNS = (
    re.compile(r"(?i)((?:access_?token|key|password|token)=)[^&\s\"']+"),
    re.compile(r"(?i)((?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"()eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"),
    # OAuth: an authorization code or client secret in a URL or form, a PKCE code verifier anywhere.
    re.compile(r"(?i)([?&](?:code|client_secret|subject_token)=)[^&\s\"']+"),
    re.compile(r"(?i)(code_verifier['\"]?\s*[:=]\s*['\"]?)[A-Za-z0-9._~-]+"),
)


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(r"\1[redacted]", text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with credentials removed (formats its args first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
