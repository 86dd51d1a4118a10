"""HTTP responses in Ably's shapes, with the no-cache headers every /auth answer must carry."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.responses import Response

from authserver.errors import AuthServerError, error_info

NO_CACHE = {
    "Cache-Control": "private, no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
    "Expires": "0",
}
_HEADER_UNSAFE = re.compile(r"[^\x20-\x7e]")


class PreparedResponse(Response):
    """A response whose body is already serialised, with the no-cache headers prebuilt (hot path)."""

    _NO_CACHE_RAW = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in NO_CACHE.items()]

    def __init__(self, body: str, media_type: str) -> None:
        self.status_code = 200
        self.background = None
        self.body = body.encode("utf-8")
        self.raw_headers = [
            (b"content-length", str(len(self.body)).encode("latin-1")),
            (b"content-type", media_type.encode("latin-1")),
            *self._NO_CACHE_RAW,
        ]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
        headers={**NO_CACHE, **(headers or {})},
    )


def error_body(code: int, status: int, message: str) -> dict[str, Any]:
    return {"error": error_info(code, status, message)}


def error_headers(code: int, message: str) -> dict[str, str]:
    """``X-Ably-Errorcode``/``X-Ably-Errormessage``: Ably clients read an error body only with them.
    Header values must be latin-1: the message is kept ASCII, on one line, at most 200 characters."""
    return {"X-Ably-Errorcode": str(code), "X-Ably-Errormessage": _HEADER_UNSAFE.sub("?", message)[:200]}


def error_response(code: int, status: int, message: str) -> Response:
    """Ably error body plus X-Ably-Errorcode/X-Ably-Errormessage (clients use the body only with them)."""
    return json_response(error_body(code, status, message), status, error_headers(code, message))


def exception_response(exc: AuthServerError) -> Response:
    """The error in Ably's shape; with ``Retry-After`` when the error class says when to try again."""
    headers = error_headers(exc.code, exc.message)
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return json_response(error_body(exc.code, exc.status, exc.message), exc.status, headers)
