"""The REST endpoints the Ably clients call: time, requestToken, revokeTokens, channel publish,
history and presence. JSON or msgpack both ways (``Content-Type`` in, ``Accept`` out); errors are
Ably ErrorInfo bodies plus ``X-Ably-Errorcode``/``X-Ably-Errormessage`` (rendered in :mod:`.app`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from typing import Any

import msgpack
from starlette.requests import Request
from starlette.responses import Response

from authserver.errors import AuthServerError, BadRequestError, NotAuthenticatedError, TokenError
from authserver.http.bodies import read_bounded
from authserver.sandbox.channels import check_channel_name
from authserver.sandbox.grants import Actor, JudgedCredential, denied, require, resolve_identity
from authserver.sandbox.history import HistoryQuery
from authserver.sandbox.hub import Sandbox
from authserver.sandbox.native_tokens import token_details
from authserver.sandbox.protocol import error_info, payloads_for_json
from authserver.sandbox.revocation import MAX_ISSUED_BEFORE_AGE_MS, RevocationTarget

MSGPACK = "application/x-msgpack"
MAX_REVOCATION_TARGETS = 100
# NOTE: ASCII digits only and few of them: str.isdigit() accepts "²", which int() then refuses.
_SIGNED = re.compile(r"-?[0-9]{1,15}")


def _sandbox(request: Request) -> Sandbox:
    sandbox: Sandbox = request.app.state.sandbox
    return sandbox


def respond(request: Request, value: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``value`` as msgpack when the client accepts it, else JSON (binary data as base64)."""
    if MSGPACK in request.headers.get("accept", ""):
        return Response(msgpack.packb(value, use_bin_type=True), status, headers, media_type=MSGPACK)
    body = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return Response(body, status, headers, media_type="application/json")


def _body_too_large() -> BadRequestError:
    return BadRequestError("Request body too large", code=40009, status=413)


async def read_body(request: Request) -> Any:
    """The decoded request body (msgpack or JSON).

    :raises BadRequestError: 40009 when larger than ``max_frame_size``, 40000 when unreadable.
    """
    limit = _sandbox(request).limits.max_frame_size
    body = await read_bounded(request, limit, _body_too_large, refuse_odd_length=False)
    try:
        if MSGPACK in request.headers.get("content-type", ""):
            return msgpack.unpackb(body, raw=False)
        return json.loads(body)
    except (ValueError, msgpack.UnpackException, TypeError, RecursionError):
        raise BadRequestError("request body is not valid JSON or msgpack") from None


def _decode_b64(text: str) -> str | None:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def authenticate(request: Request) -> JudgedCredential:
    """The grant of the request's ``Authorization`` header (Basic key, or Bearer token: base64 or raw).

    :raises AuthServerError: 40101 without credentials or with a bad key; the judge's codes for tokens.
    """
    sandbox = _sandbox(request)
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    value = value.strip()
    now = sandbox.now_ms()
    if scheme.lower() == "basic" and value:
        key_text = _decode_b64(value)
        if key_text is None:
            raise NotAuthenticatedError("Basic credentials are not base64")
        return sandbox.keyring.check_basic(key_text, now_ms=now)
    if scheme.lower() == "bearer" and value:
        # Both SDKs base64 the token (even a JWT); accept the raw token too.
        decoded = _decode_b64(value)
        token = decoded if decoded is not None and decoded.isprintable() else value
        return sandbox.judge.judge(token, now_ms=now)
    raise NotAuthenticatedError("No authentication information provided (Authorization: Basic or Bearer)")


def identify(request: Request, grant: JudgedCredential) -> Actor:
    """Basic auth may name a clientId in ``X-Ably-ClientId`` (base64); tokens carry their own."""
    requested = None
    header = request.headers.get("x-ably-clientid")
    if header and grant.kind == "key":
        requested = _decode_b64(header)
        if requested is None:
            raise BadRequestError("X-Ably-ClientId is not base64", code=40012)
    return resolve_identity(grant, requested)


def _channel(request: Request) -> str:
    return check_channel_name(request.path_params["channel"])


def _history_query(request: Request) -> HistoryQuery:
    return HistoryQuery.parse(request.query_params, max_limit=_sandbox(request).limits.max_page_size)


def _payload_body(request: Request, items: list[dict[str, Any]]) -> Any:
    """Messages or members as sent: binary data stays binary in msgpack, base64 in JSON."""
    return items if MSGPACK in request.headers.get("accept", "") else payloads_for_json(items)


# -- endpoints --------------------------------------------------------------------------------------


async def get_time(request: Request) -> Response:
    return respond(request, [_sandbox(request).now_ms()])


async def request_token(request: Request) -> Response:
    sandbox = _sandbox(request)
    basic = authenticate(request) if request.headers.get("authorization") else None
    body = await read_body(request)
    token, grant = sandbox.issuer.exchange(request.path_params["key_name"], body, now_ms=sandbox.now_ms(), basic=basic)
    return respond(request, token_details(token, grant), headers={"Cache-Control": "no-store"})


async def revoke_tokens(request: Request) -> Response:
    sandbox = _sandbox(request)
    key_name = request.path_params["key_name"]
    grant = authenticate(request)
    if grant.kind != "key":
        raise TokenError("Token revocation requires basic authentication with the key", code=40162)
    if grant.key_name != key_name:
        # Ably: "can only revoke tokens using the same key that issued them" (ably-spec 8.3).
        raise TokenError("Tokens can only be revoked with the key that issued them", code=40133, status=401)
    if not sandbox.keyring.revocable(key_name):
        raise BadRequestError("Token revocation is not enabled for this key (revocableTokens)", code=40121)
    body = await read_body(request)
    targets = body.get("targets") if isinstance(body, dict) else None
    if not isinstance(targets, list) or not 0 < len(targets) <= MAX_REVOCATION_TARGETS:
        raise BadRequestError(f"targets must be a list of 1 to {MAX_REVOCATION_TARGETS} 'type:value' strings")
    now = sandbox.now_ms()
    issued_before = body.get("issuedBefore", now)
    # Ably refuses one in the future or more than an hour in the past (TokenRevocationOptions). An
    # issuer's clock may run a little ahead of the sandbox's: tolerated as an iat is (clock_skew_ms).
    earliest, latest = now - MAX_ISSUED_BEFORE_AGE_MS, now + sandbox.limits.clock_skew_ms
    if not isinstance(issued_before, int) or isinstance(issued_before, bool) or not earliest <= issued_before <= latest:
        raise BadRequestError(
            "issuedBefore must be a time in ms, not in the future and not more than an hour in the past", code=40003
        )
    margin = sandbox.limits.reauth_margin_ms if body.get("allowReauthMargin") is True else 0
    results: list[dict[str, Any]] = []
    for raw in targets:
        try:
            target = RevocationTarget.parse(raw)
            entry = sandbox.revoke(key_name, target, issued_before_ms=issued_before, margin_ms=margin)
        except AuthServerError as exc:  # each target succeeds or fails on its own
            shown = raw[:200] if isinstance(raw, str) else f"<{type(raw).__name__}>"
            results.append({"target": shown, "error": error_info(exc)})
            continue
        results.append(
            {"target": str(target), "issuedBefore": entry.issued_before_ms, "appliesAt": entry.applies_at_ms}
        )
    failures = sum(1 for r in results if "error" in r)
    return respond(request, {"successCount": len(results) - failures, "failureCount": failures, "results": results})


async def publish(request: Request) -> Response:
    sandbox = _sandbox(request)
    name = _channel(request)
    grant = authenticate(request)
    require(grant, name, "publish")
    identity = identify(request, grant)
    body = await read_body(request)
    items = body if isinstance(body, list) else [body]
    id_base = secrets.token_urlsafe(9)
    publication = sandbox.prepare_publish(name, items, grant=grant, identity=identity, origin=None, id_base=id_base)
    serials = publication.serials()
    sandbox.commit_publish(publication)
    return respond(request, {"channel": name, "messageId": id_base, "serials": serials}, status=201)


async def history(request: Request) -> Response:
    return _paged_history(request, "messages", presence=False)


async def presence_history(request: Request) -> Response:
    """``GET /channels/{ch}/presence/history`` (RSP4): enter, update and leave events, paged like history."""
    return _paged_history(request, "history", presence=True)


def _paged_history(request: Request, link_path: str, *, presence: bool) -> Response:
    """One page of a channel's message or presence history, with its ``Link`` header (RSL2)."""
    sandbox = _sandbox(request)
    name = _channel(request)
    grant = authenticate(request)
    require(grant, name, "history")
    query = _history_query(request)
    channel = sandbox.channels.get(name)
    items: list[Any] = []
    next_cursor = None
    if channel is not None:
        entries = channel.presence_entries() if presence else channel.entries()
        items, next_cursor = query.page(entries, epoch=channel.epoch)
    headers = {"Link": query.links(link_path, next_cursor)}
    return respond(request, _payload_body(request, [dict(m) for m in items]), headers=headers)


async def stats(request: Request) -> Response:
    """``GET /stats`` (RSC6): the sandbox keeps no statistics, so every page is empty but well formed.

    ably-js's REST JWT tests call it to prove a credential works.
    """
    authenticate(request)
    query = _history_query(request)
    unit = request.query_params.get("unit", "minute")
    if unit not in ("minute", "hour", "day", "month"):
        raise BadRequestError("unit must be minute, hour, day or month", code=40003)
    return respond(request, [], headers={"Link": query.links("stats", None)})


async def presence(request: Request) -> Response:
    sandbox = _sandbox(request)
    name = _channel(request)
    grant = authenticate(request)
    if not grant.capability.allows(name, "subscribe"):
        raise denied(name, "presence.get")
    limit = _history_query(request).limit
    channel = sandbox.channels.get(name)
    members = list(channel.members.values()) if channel else []
    client_id = request.query_params.get("clientId")
    connection_id = request.query_params.get("connectionId")
    members = [
        m
        for m in members
        if (client_id is None or m.get("clientId") == client_id)
        and (connection_id is None or m.get("connectionId") == connection_id)
    ]
    return respond(request, _payload_body(request, members[:limit]))
