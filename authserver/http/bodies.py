"""Request bodies read with a bound: refused before they are buffered when the declared length is too
large, and while streaming when the body turns out to be. Shared by the token service and the sandbox."""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.requests import Request

from authserver.errors import AuthServerError

_LENGTH = re.compile(r"[0-9]{1,15}")


async def read_bounded(
    request: Request, limit: int, too_large: Callable[[], AuthServerError], *, refuse_odd_length: bool = True
) -> bytes:
    """The body of ``request``, at most ``limit`` bytes.

    :param too_large: the error to raise when the body is larger (413 with the caller's wording).
    :param refuse_odd_length: a Content-Length that is not a plain number is refused as too large
        (the service); False: it is ignored and the stream decides (the sandbox, as Ably).
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if declared.isdigit() if refuse_odd_length else _LENGTH.fullmatch(declared):
            if int(declared) > limit:
                raise too_large()
        elif refuse_odd_length:
            raise too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)
