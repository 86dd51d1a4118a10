"""What the endpoints share: their collaborators, bounded request bodies, cookies, metrics and the origin check."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType
from urllib.parse import parse_qsl

from starlette.requests import Request, cookie_parser

from authserver.core.callers import Identity
from authserver.errors import (
    BadRequestError,
)
from authserver.http.bodies import read_bounded
from authserver.infra.audit import audit_issued
from authserver.infra.metrics import Metrics
from authserver.wiring import Services

log = logging.getLogger("authserver.http")


MAX_BODY = 16 * 1024


MAX_FIELDS = 100


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def _body_too_large() -> BadRequestError:
    return BadRequestError(f"request body must be at most {MAX_BODY} bytes", code=40009, status=413)


async def _read_body(request: Request) -> bytes:
    """The request body, refused before it is buffered when it is larger than ``MAX_BODY``."""
    return await read_bounded(request, MAX_BODY, _body_too_large)


def _json_pairs(body: bytes, *, strings_only: bool) -> list[tuple[str, str]]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequestError("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequestError("JSON body must be an object")
    pairs: list[tuple[str, str]] = []
    for name, value in data.items():
        if isinstance(value, str):
            text = value
        elif strings_only:
            raise BadRequestError(f"field {name[:40]!r} must be a string")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            text = str(value)
        elif name == "capability" and isinstance(value, dict):
            text = json.dumps(value)  # a capability sent as an object rather than a JSON string
        else:
            continue
        try:
            (name + text).encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequestError(f"field {name[:40]!r} is not valid UTF-8") from None
        pairs.append((name, text))
    return pairs


async def body_pairs(request: Request, *, strings_only: bool = False) -> list[tuple[str, str]]:
    """Fields of a POST body: form-encoded (what both Ably clients send) or a JSON object."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await _read_body(request)
    if not body:
        return []
    if content_type == "application/json":
        return _json_pairs(body, strings_only=strings_only)
    if content_type in ("application/x-www-form-urlencoded", ""):
        try:
            return parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
        except UnicodeDecodeError:
            raise BadRequestError("form body is not valid UTF-8") from None
        except ValueError:
            raise BadRequestError(f"form body has more than {MAX_FIELDS} fields") from None
    raise BadRequestError(f"unsupported Content-Type {content_type[:60]!r}; send a form or JSON")


@lru_cache(maxsize=256)
def _parsed_cookies(header: str) -> Mapping[str, str]:
    """A ``Cookie`` header parsed as Starlette parses it, remembered: a client sends the same header on
    every renewal (read-only, since the answer is shared)."""
    return MappingProxyType(cookie_parser(header))


def request_cookies(request: Request) -> Mapping[str, str]:
    """The request's cookies, as ``request.cookies`` gives them (several ``Cookie`` headers merged)."""
    headers = request.headers.getlist("cookie")
    if len(headers) == 1:
        return _parsed_cookies(headers[0])
    cookies: dict[str, str] = {}
    for header in headers:
        cookies.update(_parsed_cookies(header))
    return cookies


def metrics_of(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def origin_allowed(request: Request, svc: Services) -> bool:
    """CSRF defence for state-changing POSTs (beside the SameSite=Strict cookie)."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser, or a same-origin navigation of an old browser
    origin = origin.rstrip("/").lower()
    return origin == f"{request.url.scheme}://{request.headers.get('host', '')}".lower() or (
        origin in svc.settings.allowed_origins
    )


def count_issued(request: Request, identity: Identity, fmt: str, capability: str, ttl_ms: int) -> None:
    metrics_of(request).token_issued(fmt, identity.source)
    audit_issued(identity, fmt, capability, ttl_ms)
