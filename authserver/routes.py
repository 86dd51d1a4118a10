"""Thin endpoints: parse the request, call the domain, map the result. Nothing else."""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from .errors import BadRequestError, ForbiddenError, NotAuthenticatedError
from .identity import Credentials, Identity, authenticate_any
from .identity.sessions import COOKIE_NAME
from .issuance import parse_token_params
from .responses import PreparedResponse, json_response
from .services import Services

log = logging.getLogger("authserver.http")
MAX_BODY = 16 * 1024
FORMATS = ("details", "jwt", "tokenrequest")


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def _body_pairs(request: Request) -> list[tuple[str, str]]:
    """Token params from a POST body: form-encoded (what both Ably clients send) or JSON."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if len(body) > MAX_BODY:
        raise BadRequestError(f"request body is larger than {MAX_BODY} bytes", code=40000)
    if not body:
        return []
    if content_type == "application/json":
        try:
            data = json.loads(body)
        except ValueError:
            raise BadRequestError("request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise BadRequestError("JSON body must be an object")
        pairs: list[tuple[str, str]] = []
        for name, value in data.items():
            if isinstance(value, bool) or value is None:
                continue
            if isinstance(value, int | float | str):
                pairs.append((name, str(value)))
            elif name == "capability" and isinstance(value, dict):
                pairs.append((name, json.dumps(value)))
        return pairs
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data", ""):
        form: FormData = await request.form(max_files=0, max_fields=100)
        return [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    raise BadRequestError(f"unsupported Content-Type {content_type[:60]!r}; use form or JSON")


@lru_cache(maxsize=256)
def _wants_jwt(accept: str) -> bool:
    """True when the Accept header prefers application/jwt over JSON."""
    best_jwt, best_json = -1.0, -1.0
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.strip().lower()
        if media == "application/jwt":
            best_jwt = max(best_jwt, quality)
        elif media in ("application/json", "application/*", "*/*"):
            best_json = max(best_json, quality if media == "application/json" else quality - 0.001)
    return best_jwt > 0 and best_jwt > best_json


def _identity(request: Request, svc: Services) -> Identity:
    identity = authenticate_any(
        svc.authenticators, Credentials(cookies=request.cookies, headers=request.headers), svc.clock()
    )
    if identity is None:
        raise NotAuthenticatedError("not logged in", code=40101)
    return identity


async def auth(request: Request) -> Response:
    """The authUrl: a token for the logged-in caller, in the format the client prefers."""
    svc = services(request)
    pairs = list(request.query_params.multi_items())
    if request.method == "POST":
        pairs += await _body_pairs(request)
    params, fmt = parse_token_params(pairs)
    if fmt is not None and fmt not in FORMATS:
        raise BadRequestError(f"format must be one of {', '.join(FORMATS)}")
    identity = _identity(request, svc)
    if fmt == "tokenrequest":
        return json_response(svc.issuer.token_request(identity, params).to_dict())
    issued = svc.issuer.jwt(identity, params)
    if fmt == "jwt" or (fmt is None and _wants_jwt(request.headers.get("accept", "")[:200])):
        return PreparedResponse(issued.token, "application/jwt")
    return PreparedResponse(issued.details_json(), "application/json")


def _origin_allowed(request: Request, svc: Services) -> bool:
    """CSRF defence for state-changing POSTs (beside the SameSite=Strict cookie)."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser, or a same-origin navigation of an old browser
    own = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
    return origin.lower() == own or origin.rstrip("/").lower() in {o.lower() for o in svc.settings.allowed_origins}


async def _login_fields(request: Request) -> tuple[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if len(body) > MAX_BODY:
        raise BadRequestError(f"request body is larger than {MAX_BODY} bytes")
    data: Any
    if content_type == "application/json":
        try:
            data = json.loads(body or b"null")
        except ValueError:
            raise BadRequestError("request body is not valid JSON") from None
    elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        data = dict((await request.form(max_files=0, max_fields=20)).items())
    else:
        raise BadRequestError('send the login as JSON {"username", "password"} or as a form')
    if not isinstance(data, dict):
        raise BadRequestError("login body must be an object with username and password")
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise BadRequestError("login needs a non-empty 'username' and 'password'")
    return username, password


def _secure_cookie(request: Request, svc: Services) -> bool:
    mode = svc.settings.cookie_secure
    return mode == "true" or (mode == "auto" and request.url.scheme == "https")


async def login(request: Request) -> Response:
    svc = services(request)
    if not _origin_allowed(request, svc):
        raise ForbiddenError("cross-origin login refused")
    username, password = await _login_fields(request)
    check = svc.users.demo_login if svc.settings.demo_login else svc.users.verify_login
    try:
        identity = await run_in_threadpool(check, username, password)
    except NotAuthenticatedError:
        log.info("login refused for a username of %d characters", len(username))
        raise
    cookie = await run_in_threadpool(svc.sessions.create, identity, svc.clock())
    log.info("login: clientId=%s role=%s source=%s", identity.client_id, identity.role, identity.source)
    response = json_response({"clientId": identity.client_id, "role": identity.role})
    response.set_cookie(
        COOKIE_NAME,
        cookie,
        max_age=svc.settings.session_ttl,
        httponly=True,
        samesite="strict",
        secure=_secure_cookie(request, svc),
        path="/",
    )
    return response


async def logout(request: Request) -> Response:
    svc = services(request)
    if not _origin_allowed(request, svc):
        raise ForbiddenError("cross-origin logout refused")
    svc.sessions.end(request.cookies.get(COOKIE_NAME))
    response = json_response({})
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict", secure=_secure_cookie(request, svc))
    return response


async def session(request: Request) -> Response:
    identity = _identity(request, services(request))
    return json_response({"clientId": identity.client_id, "role": identity.role})


async def healthz(request: Request) -> Response:
    svc = services(request)
    return json_response({"status": "ok", "keyName": svc.issuer.key.name, "development": svc.settings.development})
