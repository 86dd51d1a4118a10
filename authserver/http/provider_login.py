""" "Log in with <provider>" on the page: OpenID Connect authorization code flow with PKCE, ``state``
and ``nonce``, through Authlib's Starlette client.

``GET /login/oidc`` redirects to the provider; ``GET /login/oidc/callback`` exchanges the code, verifies
the ID token with the same verifier as bearer tokens (audience: the page's client id) and starts an
ordinary server-side session whose source is ``oidc:<issuer>``, then redirects to the page. Renewal,
logout and revocation then work exactly as for accounts.

The redirect URI sent to the provider is ``AUTHSERVER_PUBLIC_URL`` + ``/login/oidc/callback``, never
built from the request's ``Host`` (which a client chooses: a lax provider would hand the code to it).

The flow's own state (code verifier, nonce, redirect URI) stays in server memory for ten minutes,
keyed by ``state`` (in Redis too when ``REDIS_URL`` is set, so that any worker or machine can answer
the callback); the browser holds only a signed marker (Starlette's session cookie,
SameSite=Lax so that it comes back with the provider's redirect) that binds the callback to it. A
callback without the marker of its ``state`` is refused before the flow is looked at, so whoever
learns a victim's ``state`` cannot end the victim's flow. Neither the code, the verifier nor any
token is logged.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from authserver.core.issuers import UpstreamIssuer
from authserver.errors import AuthServerError, ConfigError
from authserver.http.forwarding import throttle_address
from authserver.http.sessioncookie import start_session
from authserver.identity.oidc.bearer import UpstreamVerifier
from authserver.infra.redislink import RedisLink, unreachable_errors
from authserver.wiring import Services

if TYPE_CHECKING:
    from limits import RateLimitItem

    from authserver.infra.ratelimits import Limiter

log = logging.getLogger("authserver.http")
STATE_COOKIE = "authserver_oidc_flow"
FLOW_SECONDS = 600
_FLOW_LIMIT = 10_000
LOGIN_PATH = "/login/oidc"
CALLBACK_PATH = "/login/oidc/callback"


class FlowCache:
    """Authlib's state cache: the flows begun in the last ten minutes, in bounded memory."""

    def __init__(self, limit: int = _FLOW_LIMIT) -> None:
        self.limit = limit
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()

    async def get(self, key: str) -> str | None:
        entry = self._entries.get(key)
        if entry is None or entry[1] <= time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[0]

    async def set(self, key: str, value: str, expires: int | None = None) -> None:
        self._entries[key] = (value, time.monotonic() + (expires or FLOW_SECONDS))
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)


class SharedFlowCache:
    """The flows kept in Redis too, so that a callback answered by another worker or machine than the
    one that began the flow finds it. Redis not answering: this process's own memory still serves
    the flows it began (the one-process behaviour), and the link reports the failure."""

    PREFIX = "authserver:oidc-flow:"

    def __init__(self, link: RedisLink, local: FlowCache) -> None:
        self.link = link
        self.local = local

    async def get(self, key: str) -> str | None:
        value = await self.local.get(key)
        if value is not None or not self.link.usable():
            return value
        try:
            raw = await self.link.client.get(self.PREFIX + key)
        except unreachable_errors() as exc:
            self.link.failed("oidc-flow", exc)
            return None
        self.link.succeeded()
        return raw.decode("utf-8") if isinstance(raw, bytes) else raw

    async def set(self, key: str, value: str, expires: int | None = None) -> None:
        await self.local.set(key, value, expires)
        if not self.link.usable():
            return
        try:
            await self.link.client.set(self.PREFIX + key, value, ex=expires or FLOW_SECONDS)
        except unreachable_errors() as exc:
            self.link.failed("oidc-flow", exc)
        else:
            self.link.succeeded()

    async def delete(self, key: str) -> None:
        await self.local.delete(key)
        if not self.link.usable():
            return
        try:
            await self.link.client.delete(self.PREFIX + key)
        except unreachable_errors() as exc:
            self.link.failed("oidc-flow", exc)


class _StartLimit:
    """Provider logins one address may start (AUTHSERVER_PROVIDER_LOGIN_RATE): each start keeps a flow's
    state (in memory, or Redis) for FLOW_SECONDS, so a flood of starts must not fill it or push out the
    flows of people mid-login. Shared through Redis when REDIS_URL is set; the `limits` library is loaded
    at the first start."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._limiter: Limiter | None = None
        self._rate: RateLimitItem | None = None
        self._said: set[str] = set()

    async def allow(self, address: str) -> bool:
        if self._limiter is None or self._rate is None:
            from authserver.infra.ratelimits import Limiter, parse_rate

            self._limiter = Limiter(self.svc.redis, prefix="authserver-oidc-start")
            self._rate = parse_rate(self.svc.settings.provider_login_rate)
        if await self._limiter.hit(self._rate, "oidc-start", address):
            return True
        if address not in self._said and len(self._said) < 1024:  # once per address and process
            self._said.add(address)
            log.warning(
                "provider logins started from %s over AUTHSERVER_PROVIDER_LOGIN_RATE (%s): refused", address, self._rate
            )
        return False


def _failed(reason: str) -> Response:
    return RedirectResponse("/?" + urlencode({"login_error": reason[:200]}), status_code=303)


def flow_marker(request: Request, client_name: str) -> bool:
    """Whether this browser began the flow the callback's ``state`` names (its flow cookie holds the marker).

    NOTE: Authlib's callback deletes the flow named by ``state`` whether or not the marker matched (and
    then refuses), so a stranger's callback would end the victim's flow: it is checked here first. The
    key is Authlib's (``_state_<client>_<state>``); the browser test of the whole flow fails if it moves.
    """
    state = request.query_params.get("state")
    return bool(state) and request.session.get(f"_state_{client_name}_{state}") is not None


def _oauth_client(svc: Services, upstream: UpstreamIssuer) -> Any:
    """Authlib's client for the page at ``upstream``."""
    # Authlib's debug lines quote the PKCE code verifier and tokens: they are never let through.
    logging.getLogger("authlib").setLevel(logging.INFO)
    from authlib.integrations.starlette_client import OAuth  # only when configured (memory)

    settings = svc.settings
    # With REDIS_URL every worker and machine sees the flows; without it, one process's memory.
    oauth = OAuth(cache=SharedFlowCache(svc.redis, FlowCache()) if svc.redis is not None else FlowCache())
    client_kwargs: dict[str, Any] = {"scope": "openid", "code_challenge_method": "S256", "timeout": 10.0}
    if not settings.oidc_client_secret:
        client_kwargs["token_endpoint_auth_method"] = "none"  # noqa: S105 - a public client: PKCE only
    return oauth.register(
        "provider",
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret,
        server_metadata_url=upstream.discovery_url,
        client_kwargs=client_kwargs,
    )


def provider_login_routes(svc: Services) -> list[BaseRoute]:
    """The two routes of the code flow, or none when OIDC_CLIENT_ID is not set."""
    settings = svc.settings
    if not settings.oidc_client_id or not settings.oidc_issuers or svc.upstream is None:
        return []
    if settings.public_url is None:  # load_settings refuses this; a hand-made Settings might not
        raise ConfigError(["AUTHSERVER_PUBLIC_URL: required with OIDC_CLIENT_ID"])
    redirect_uri = settings.public_url + CALLBACK_PATH
    from authlib.integrations.starlette_client import OAuthError  # only when configured (memory)

    upstream = settings.oidc_issuers[0]
    # An ID token's audience is the client id of the page, not the API audience of bearer tokens.
    id_tokens: UpstreamIssuer = replace(upstream, audience=(settings.oidc_client_id,))
    verifier: UpstreamVerifier = svc.upstream
    client = _oauth_client(svc, upstream)

    starts = _StartLimit(svc)

    async def begin(request: Request) -> Response:
        if not await starts.allow(throttle_address(request.scope)):
            return _failed("too many logins started from this address; try again in a minute")
        try:
            response: Response = await client.authorize_redirect(request, redirect_uri)
        except (OAuthError, OSError, ValueError) as exc:
            log.warning("log in with %s: cannot start (%s)", upstream.display_name, type(exc).__name__)
            return _failed(f"{upstream.display_name} cannot be reached; try again later")
        return response

    async def callback(request: Request) -> Response:
        # NOTE: a non-empty error only: Authlib deletes the flow's state on an empty one before refusing it.
        if not request.query_params.get("error") and not flow_marker(request, client.name):
            log.info("log in with %s refused: a callback without its flow cookie", upstream.display_name)
            return _failed(f"{upstream.display_name} login did not complete (not begun in this browser)")
        try:
            token = await client.authorize_access_token(request)
        except OAuthError as exc:
            log.info("log in with %s refused: %s", upstream.display_name, exc.error)
            return _failed(f"{upstream.display_name} login did not complete ({exc.error})")
        except (OSError, ValueError) as exc:
            log.warning("log in with %s failed: %s", upstream.display_name, type(exc).__name__)
            return _failed(f"{upstream.display_name} cannot be reached; try again later")
        id_token = token.get("id_token") if isinstance(token, dict) else None
        if not isinstance(id_token, str):
            return _failed(f"{upstream.display_name} sent no ID token")
        try:
            identity, sid = await verifier.identity_for(id_token, id_tokens, svc.clock())
        except AuthServerError as exc:
            log.info("log in with %s refused: %s", upstream.display_name, exc.message)
            return _failed(exc.message)
        # The provider's session id: its back-channel logout for that sid ends exactly this session.
        return await start_session(request, svc, identity, RedirectResponse("/", status_code=303), sid=sid)

    return [
        Route(LOGIN_PATH, begin, methods=["GET"], name="oidc_login"),
        Route(CALLBACK_PATH, callback, methods=["GET"], name="oidc_callback"),
    ]
