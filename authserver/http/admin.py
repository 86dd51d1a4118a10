"""``/admin/v1``: the admin API for backends and support tools (docs/admin-api.md).

JSON in and out; every refusal is an RFC 9457 problem (``application/problem+json``: ``type``,
``title``, ``status``, ``detail`` and the Ably ``code``). The operations are :mod:`.admin_spec`'s and
run the same service layer as the command line (:class:`~authserver.identity.users.UserStore`,
:class:`~authserver.identity.operations.Operations`).

Credentials, as ``Authorization: Bearer``: an admin API key (``asadm_...``, looked up in the database
on every call, so a revoked key is refused at once by every worker), or, with AUTHSERVER_ADMIN_ROLE
set, a trusted provider's token whose role claim carries that role. None or an invalid one: 401; a
valid provider token without the role: 403. Each credential has its own rate limit
(AUTHSERVER_ADMIN_RATE), and every call is audited (who, what, on what, the status), never with a
key or password. AUTHSERVER_ADMIN_API=off removes the routes; until a key exists or an admin role
is set, the API answers 404 saying how to switch it on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from authserver.config import Settings
from authserver.errors import (
    AuthServerError,
    BadRequestError,
    ForbiddenError,
    NotAuthenticatedError,
    RateLimitedError,
    UserError,
)
from authserver.http.admin_spec import (
    INVALID_BODY,
    INVALID_VALUE,
    OPERATIONS,
    PREFIX,
    PROBLEM_TITLES,
    PROBLEM_TYPE,
    Operation,
    openapi_document,
)
from authserver.http.bodies import read_bounded
from authserver.http.common import MAX_BODY, services
from authserver.http.responses import NO_CACHE, json_response
from authserver.identity.oidc.bearer import bearer_token
from authserver.identity.sessions import session_revocation_key
from authserver.identity.users import User, check_username
from authserver.infra.audit import audit_admin
from authserver.infra.logs import LogLimiter
from authserver.storage import SessionSummary
from authserver.wiring import Services

if TYPE_CHECKING:
    from limits import RateLimitItem

    from authserver.infra.ratelimits import Limiter

log = logging.getLogger("authserver.http")
#: Calls refused before any credential was accepted are audited a few a minute (anyone can send them).
_anonymous = LogLimiter(burst=5, interval=60.0)
_OFF = (
    "the admin API is off: it answers once an admin API key exists (`authserver api-keys create NAME`) or"
    " AUTHSERVER_ADMIN_ROLE is set"
)


@dataclass(frozen=True)
class Caller:
    """Who called: ``credential`` is ``key`` or ``provider``; ``name`` what the audit line says."""

    credential: str
    name: str


@dataclass
class Call:
    """One admin call being answered; a handler names its ``target`` for the audit line."""

    request: Request
    svc: Services
    body: dict[str, Any]
    now: float
    target: str | None = None

    @property
    def username(self) -> str:
        name: str = self.request.path_params["username"]
        self.target = name
        return name


def problem(status: int, detail: str, code: int | None = None, headers: dict[str, str] | None = None) -> Response:
    """An RFC 9457 problem: ``type`` names the kind (``urn:authserver:problem:<status>``)."""
    body: dict[str, Any] = {
        "type": f"urn:authserver:problem:{status}",
        "title": PROBLEM_TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if code is not None:
        body["code"] = code
    return Response(
        json.dumps(body), status_code=status, media_type=PROBLEM_TYPE, headers={**NO_CACHE, **(headers or {})}
    )


def _problem_of(exc: AuthServerError) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="authserver-admin"'} if exc.status == 401 else {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    status = exc.status if 400 <= exc.status < 600 else 500
    return problem(status, exc.message, exc.code, headers)


def _user(user: User) -> dict[str, Any]:
    return {"username": user.username, "clientId": user.client_id, "role": user.role, "disabled": user.disabled}


def _session(session: SessionSummary) -> dict[str, Any]:
    return {
        "id": session_revocation_key(session.id_hash),
        "clientId": session.client_id,
        "role": session.role,
        "source": session.source,
        "expiresAt": int(session.expires * 1000),
    }


# -- the operations -------------------------------------------------------------------------------


async def _list_users(call: Call) -> Response:
    return json_response({"users": [_user(user) for user in await call.svc.users.list()]})


async def _create_user(call: Call) -> Response:
    body = call.body
    call.target = body["username"]
    user = await call.svc.users.add(
        body["username"], body["password"], role=body.get("role"), client_id=body.get("clientId"), now=call.now
    )
    return json_response(_user(user), 201, {"Location": f"{PREFIX}/users/{quote(user.username, safe='')}"})


async def _get_user(call: Call) -> Response:
    return json_response(_user(await call.svc.operations.user(call.username)))


async def _remove_user(call: Call) -> Response:
    await call.svc.users.remove(call.username)
    return Response(status_code=204, headers=NO_CACHE)


async def _set_disabled(call: Call, disabled: bool) -> Response:
    name = call.username
    await call.svc.users.set_disabled(name, disabled)
    return json_response(_user(await call.svc.operations.user(name)))


async def _set_role(call: Call) -> Response:
    name = call.username
    await call.svc.users.set_role(name, call.body["role"])
    return json_response(_user(await call.svc.operations.user(name)))


async def _set_password(call: Call) -> Response:
    await call.svc.users.set_password(call.username, call.body["password"])
    return Response(status_code=204, headers=NO_CACHE)


async def _list_sessions(call: Call) -> Response:
    sessions = await call.svc.operations.sessions_of(call.username, now=call.now)
    return json_response({"sessions": [_session(session) for session in sessions]})


async def _end_sessions(call: Call) -> Response:
    await call.svc.operations.end_sessions(call.username)
    return Response(status_code=204, headers=NO_CACHE)


async def _revoke(call: Call) -> Response:
    pairs = []
    call.target = ",".join(call.body["targets"])[:200]
    for text in call.body["targets"]:
        kind, sep, value = text.partition(":")
        if not sep or not value:
            raise BadRequestError(f"target {text[:80]!r} is not KIND:VALUE (user, clientId, session, revocationKey)")
        pairs.append((kind, value))
    reauth = bool(call.body.get("allowReauthMargin", False))
    done = await call.svc.operations.revoke(
        pairs, issued_before_ms=call.body.get("issuedBefore"), reauth=reauth, now=call.now
    )
    body = {
        "targets": list(done.targets),
        "queued": done.queued,
        "issuedBefore": done.issued_before_ms,
        "allowReauthMargin": reauth,
    }
    return json_response(body, 202)


async def _outbox(call: Call) -> Response:
    state = await call.svc.operations.outbox_state(now=call.now)
    return json_response(
        {
            "revocation": call.svc.revoker is not None,
            "pending": state.pending,
            "due": state.due,
            "retrying": state.retrying,
            "oldestQueuedAt": None if state.oldest is None else int(state.oldest * 1000),
            "maxAttempts": state.max_attempts,
        }
    )


_DOCUMENT = json.dumps(openapi_document(), separators=(",", ":"))


async def _openapi(call: Call) -> Response:
    return Response(_DOCUMENT, media_type="application/json", headers={"Cache-Control": "no-cache"})


HANDLERS: dict[str, Callable[[Call], Awaitable[Response]]] = {
    "getOpenApi": _openapi,
    "listUsers": _list_users,
    "createUser": _create_user,
    "getUser": _get_user,
    "removeUser": _remove_user,
    "disableUser": lambda call: _set_disabled(call, True),
    "enableUser": lambda call: _set_disabled(call, False),
    "setRole": _set_role,
    "setPassword": _set_password,
    "listSessions": _list_sessions,
    "endSessions": _end_sessions,
    "revokeTokens": _revoke,
    "getOutbox": _outbox,
}


# -- credentials, limits, bodies ------------------------------------------------------------------


async def _caller(request: Request, svc: Services, now: float) -> Caller:
    """:raises NotAuthenticatedError: no credential, or one that is not valid (401).
    :raises ForbiddenError: a valid provider token without the admin role (403)."""
    token = bearer_token(request.headers)
    if token is None:
        raise NotAuthenticatedError("an admin API key or provider token is required (Authorization: Bearer)")
    if token.startswith("asadm_"):
        key = await svc.admin_keys.verify(token, now=now)
        if key is None:
            raise NotAuthenticatedError("admin API key refused: unknown or revoked")
        return Caller("key", f"{key.name} ({key.key_id})")
    if svc.upstream is None:
        raise NotAuthenticatedError(
            "bearer token refused: not an admin API key, and no identity provider is configured"
        )
    identity = await svc.upstream.identity(token, now)
    role = svc.settings.admin_role
    if role is None:
        raise ForbiddenError("no provider token may use the admin API here (AUTHSERVER_ADMIN_ROLE is unset)")
    if role not in identity.claimed_roles:
        raise ForbiddenError(f"the token's role claim does not carry the admin role {role!r}")
    return Caller("provider", identity.subject)


async def _enabled(svc: Services) -> bool:
    return svc.settings.admin_role is not None or await svc.admin_keys.any_exist()


async def _body(request: Request, op: Operation) -> dict[str, Any]:
    if op.body is None:
        return {}  # an operation without a body ignores one sent anyway
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise BadRequestError("send the body as application/json", code=INVALID_BODY, status=415)

    def too_large() -> AuthServerError:
        return BadRequestError(f"request body must be at most {MAX_BODY} bytes", code=40009, status=413)

    return op.body.parse(await read_bounded(request, MAX_BODY, too_large))


class AdminLimits:
    """Calls per credential (AUTHSERVER_ADMIN_RATE), shared through Redis when REDIS_URL is set. The
    `limits` library is loaded at the first call that counts (memory per worker otherwise)."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._limiter: Limiter | None = None
        self._rate: RateLimitItem | None = None

    async def check(self, caller: Caller) -> None:
        if self._limiter is None or self._rate is None:
            from authserver.infra.ratelimits import Limiter, parse_rate

            self._limiter = Limiter(self.svc.redis, prefix="authserver-admin")
            self._rate = parse_rate(self.svc.settings.admin_rate)
        if not await self._limiter.hit(self._rate, caller.credential, caller.name):
            error = RateLimitedError(f"too many admin API calls with this credential (limit {self._rate})")
            error.retry_after = int(self._rate.get_expiry())
            raise error


# -- the endpoint ---------------------------------------------------------------------------------


def _audit(op: Operation, call: Call | None, caller: Caller | None, status: int, request: Request) -> None:
    target = call.target if call is not None else request.path_params.get("username")
    if caller is None:
        suppressed = _anonymous.take(f"admin-{status}")
        if suppressed is not None:
            audit_admin(op.operation_id, target, "none", "-", status, suppressed)
        return
    audit_admin(op.operation_id, target, caller.credential, caller.name, status)


def check_path(request: Request) -> None:
    """The path as sent holds no encoded ``/`` (routing runs on the decoded path: ``alice%2Frole``
    would be user ``alice``'s route ``role``) and its username, if any, is one an account can have.

    :raises BadRequestError: either, before anything is looked up (400, 40003).
    """
    raw = request.scope.get("raw_path") or request.scope["path"].encode("utf-8", "replace")
    if b"%2f" in raw.lower():
        raise BadRequestError("an admin API path may not hold an encoded '/' (%2F)", code=INVALID_VALUE)
    name = request.path_params.get("username")
    if name is not None:
        try:
            check_username(name)
        except UserError as exc:
            raise BadRequestError(exc.message, code=INVALID_VALUE) from None


@dataclass
class _Progress:
    """How far an admin call got, for its audit line: who called, once known; the call, once made."""

    caller: Caller | None = None
    call: Call | None = None


async def _respond(request: Request, op: Operation, svc: Services, progress: _Progress) -> Response:
    if not await _enabled(svc):
        return problem(404, _OFF, 40400)
    now = svc.clock()
    if not op.public:
        progress.caller = await _caller(request, svc, now)
        await request.app.state.admin_limits.check(progress.caller)
    check_path(request)
    progress.call = Call(request, svc, await _body(request, op), now)
    return await HANDLERS[op.operation_id](progress.call)


async def _answer(request: Request, op: Operation) -> Response:
    progress = _Progress()
    try:
        response = await _respond(request, op, services(request), progress)
    except AuthServerError as exc:
        response = _problem_of(exc)
    except Exception:  # a bug or an outage no layer named: still a problem, still audited
        log.exception("admin call %s failed", op.operation_id)
        response = problem(500, "the admin call failed on the server (see its log)", 50000)
    if not op.public:
        _audit(op, progress.call, progress.caller, response.status_code, request)
    return response


def _path_endpoint(operations: dict[str, Operation]) -> Callable[[Request], Awaitable[Response]]:
    allowed = ", ".join(sorted(operations))

    async def endpoint(request: Request) -> Response:
        op = operations.get(request.method)
        if op is None:
            return problem(
                405, f"{request.method[:10]} is not allowed here (allowed: {allowed})", None, {"Allow": allowed}
            )
        return await _answer(request, op)

    return endpoint


async def _unknown(request: Request) -> Response:
    return problem(404, f"no admin API operation at {request.url.path[:100]!r}", 40400)


#: Every method is routed to the operations' endpoints, which answer 405 as a problem themselves.
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def admin_routes(settings: Settings) -> list[BaseRoute]:
    """The admin API's routes (none with AUTHSERVER_ADMIN_API=off)."""
    if not settings.admin_api:
        return []
    by_path: dict[str, dict[str, Operation]] = {}
    for op in OPERATIONS:
        by_path.setdefault(op.path, {})[op.method] = op
    routes: list[BaseRoute] = [Route(path, _path_endpoint(ops), methods=_METHODS) for path, ops in by_path.items()]
    routes.append(Route(PREFIX + "/{rest:path}", _unknown, methods=_METHODS))
    return routes


def admin_state(svc: Services) -> AdminLimits | None:
    """What the app keeps for the admin API (its rate limits), or None with the API off."""
    return AdminLimits(svc) if svc.settings.admin_api else None
