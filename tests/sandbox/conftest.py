"""Fixtures for the sandbox suite: real uvicorn servers on 127.0.0.1:0 and a tiny token-issuing authUrl app.

The token app plays the part of the authserver token service: it signs Ably JWTs with
:func:`authserver.core.tokens.sign_jwt` and answers with TokenDetails JSON wrapping the JWT (spec 4.4),
or with a signed TokenRequest. Tests pick identity and lifetime through ``authParams``:

* ``user``      the clientId to put in the token (absent or empty: anonymous; ``*``: wildcard)
* ``lifetime``  token lifetime in seconds (default 60)
* ``cap``       capability JSON (default ``{"*":["*"]}``)
* ``mode``      ``details`` (default) or ``request`` (a TokenRequest for ``/keys/.../requestToken``)
* ``rkey``      an ``x-ably-revocation-key`` claim
* ``claims``    a JSON object of further JWT claims (``ably.channel.*`` user claims, publish rates)
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import jwt as pyjwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from authserver.core.keys import AblyKey
from authserver.core.tokenrequests import create_token_request
from authserver.core.tokens import IssuedToken, sign_jwt
from authserver.sandbox import SandboxLimits, create_sandbox_app

from helpers import running_server

KEY = AblyKey("sandboxApp.keyOne", "not-a-real-secret-for-sandbox-tests")
OTHER_KEY = AblyKey("sandboxApp.keyTwo", "another-not-real-secret")
#: The key ably-js's rest/auth.test.js signs with to name an app that does not exist.
UNKNOWN_APP_KEY = AblyKey("invalid.invalid", "invalidinvalid")
ALL_CAPABILITY = '{"*":["*"]}'


@dataclass(frozen=True)
class Served:
    """A server running in a background thread."""

    host: str
    port: int

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{self.host}:{self.port}"


@contextlib.contextmanager
def serve(app: ASGIApp) -> Iterator[Served]:
    """Run ``app`` with uvicorn on 127.0.0.1 and a free port until the block ends."""
    with running_server(app) as url:
        yield Served("127.0.0.1", int(url.rsplit(":", 1)[1]))


@dataclass
class TokenApp:
    """Records every authUrl call so tests can count renewals per clientId."""

    key: AblyKey = KEY
    clock: Callable[[], float] = time.time
    calls: list[dict[str, str]] = field(default_factory=list)

    def calls_for(self, user: str) -> int:
        return sum(1 for call in self.calls if call.get("user") == user)

    async def auth(self, request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "POST":
            params.update(parse_qsl((await request.body()).decode("utf-8")))
        self.calls.append(params)
        user = params.get("user") or None
        lifetime = int(params.get("lifetime", "60"))
        capability = params.get("cap", ALL_CAPABILITY)
        now = self.clock()
        headers = {"Cache-Control": "no-store"}
        if params.get("mode") == "request":
            request_ = create_token_request(
                self.key, capability=capability, client_id=user, ttl_ms=lifetime * 1000, now_ms=int(now * 1000)
            )
            return JSONResponse(request_.to_dict(), headers=headers)
        issued_at = int(now)
        extra: dict[str, Any] = json.loads(params["claims"]) if params.get("claims") else {}
        if params.get("rkey"):
            extra["x-ably-revocation-key"] = params["rkey"]
        jwt = sign_jwt(
            self.key,
            capability=capability,
            client_id=user,
            issued_at=issued_at,
            expires_at=issued_at + lifetime,
            extra_claims=extra or None,
        )
        details = IssuedToken(jwt, self.key.name, issued_at * 1000, (issued_at + lifetime) * 1000, capability, user)
        return JSONResponse(details.details(), headers=headers)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/auth", self.auth, methods=["GET", "POST"])])


@dataclass(frozen=True)
class Stack:
    """A sandbox and a token app, both served."""

    sandbox: Served
    tokens: Served
    token_app: TokenApp

    @property
    def auth_url(self) -> str:
        return f"{self.tokens.http}/auth"


@contextlib.contextmanager
def run_stack(limits: SandboxLimits | None = None, *, clock: Callable[[], float] = time.time) -> Iterator[Stack]:
    """A sandbox and a token app serving ``KEY`` and ``OTHER_KEY``; both tell the time by ``clock``."""
    token_app = TokenApp(clock=clock)
    sandbox_app = create_sandbox_app([KEY, OTHER_KEY], limits=limits, clock=clock)
    with serve(sandbox_app) as sandbox, serve(token_app.app()) as tokens:
        yield Stack(sandbox, tokens, token_app)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The shared sandbox + token app (default limits). Tests use their own channel names."""
    with run_stack() as running:
        yield running


def jwt_for(
    *,
    client_id: str | None = None,
    capability: str = ALL_CAPABILITY,
    lifetime: int = 60,
    key: AblyKey = KEY,
    now: float | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    issued_at = int(time.time() if now is None else now)
    return sign_jwt(
        key,
        capability=capability,
        client_id=client_id,
        issued_at=issued_at,
        expires_at=issued_at + lifetime,
        extra_claims=extra,
    )


def embedded_jwt(inner: str, *, expires_at: int) -> str:
    """An app's own JWT (signed with a secret Ably never sees) carrying ``inner`` in its JOSE header
    ``x-ably-token``, as Ably's "embedded token" JWTs do."""
    token: str = pyjwt.encode(
        {"exp": expires_at, "sub": "app-user"},
        "the-apps-own-secret-which-ably-never-sees",
        headers={"x-ably-token": inner},
    )
    return token
