"""``Authorization: Bearer <upstream JWT>`` -> :class:`~authserver.identity.Identity`.

:class:`UpstreamVerifier` picks the trusted issuer a token names, gets the key from that provider's
:class:`~.jwks.ProviderKeys`, verifies and maps the claims. A verified token is remembered until its
``exp`` (never past it), in bounded memory, so an upstream token is verified at most once per lifetime
and the repeated ``/auth`` calls of a client cost a hash and a dict lookup.

:class:`BearerAuthenticator` is the :class:`~authserver.identity.Authenticator` for the header: a
request with a bearer token of a trusted issuer is decided by it (a session cookie sent along is not
looked at). Any other bearer (an app's own API token in ably-js ``authHeaders``) is ignored when the
request carries a session cookie, which then decides; without one it is refused, saying why.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from authserver.core.callers import Identity
from authserver.core.issuers import UpstreamIssuer, foreign_prefix
from authserver.core.policy import Policy
from authserver.errors import ForbiddenError, NotAuthenticatedError, ProviderLogoutError
from authserver.identity import Credentials
from authserver.identity.oidc.backchannel import Stamp, UpstreamLogouts, sid_revocation_key
from authserver.identity.oidc.claims import identity_from_claims
from authserver.identity.sessions import COOKIE_NAME as SESSION_COOKIE

if TYPE_CHECKING:
    from authserver.identity.oidc.jwks import ProviderKeys
    from authserver.identity.oidc.logout import LogoutClaims

DEFAULT_CACHE_SIZE = 10_000


class VerifiedTokens:
    """Identities of verified tokens by the token's SHA-256, each until the token's ``exp``; the oldest
    entry goes when full (bounded memory)."""

    def __init__(self, limit: int = DEFAULT_CACHE_SIZE) -> None:
        self.limit = limit
        self._entries: OrderedDict[bytes, tuple[Identity, float, Stamp]] = OrderedDict()

    @staticmethod
    def digest(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def get(self, digest: bytes, now: float) -> tuple[Identity, Stamp] | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        identity, expires, stamp = entry
        if now >= expires:
            del self._entries[digest]
            return None
        return identity, stamp

    def put(self, digest: bytes, identity: Identity, expires: float, stamp: Stamp) -> None:
        self._entries[digest] = (identity, expires, stamp)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class UpstreamVerifier:
    """Every trusted provider's keys, and the cache of verified tokens."""

    def __init__(
        self,
        providers: Mapping[str, ProviderKeys],
        policy: Policy,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        http: Any = None,
        taken: Callable[[str], Awaitable[bool]] | None = None,
        logouts: UpstreamLogouts | None = None,
    ) -> None:
        self.providers = dict(providers)
        #: Back-channel logouts received: an upstream token issued before one of its user's is refused.
        self.logouts = logouts
        self.policy = policy
        #: Whether a clientId belongs to a registered account (a provider's user may never act as one).
        self.taken = taken
        self.verified = VerifiedTokens(cache_size)
        #: The HTTP client the providers share (closed with the verifier), if the verifier owns it.
        self._http = http

    async def prefetch(self) -> None:
        """Fetch every provider's keys now (at start-up); failures are logged and retried on use."""
        for provider in self.providers.values():
            await provider.refresh(force=True)

    async def identity(self, token: str, now: float) -> Identity:
        """:raises BearerRefused: (401) naming the failed check. :raises ForbiddenError: (403) a valid
        token whose clientId claim is unusable. :raises ProviderUnavailable: (503) no keys yet."""
        digest = self.verified.digest(token)
        known = self.verified.get(digest, now)
        if known is not None:
            identity, stamp = known
        else:
            from authserver.identity.oidc.verifier import (  # PyJWT (and cryptography) only with a provider configured
                BearerRefused,
                peek,
            )

            header = peek(token)
            provider = self.providers.get(header.issuer)
            if provider is None:
                raise BearerRefused("bearer token refused: its issuer is not trusted here")
            identity, expires, stamp = await self._verify(token, provider.upstream, header.algorithm, header.kid, now)
            self.verified.put(digest, identity, expires, stamp)
        if self.logouts is not None and await self.logouts.refused(stamp, now):
            raise ProviderLogoutError(
                "bearer token refused: the identity provider logged this user (or this session) out after it was"
                " issued; sign in at the provider again for a new token"
            )
        return identity

    async def logout_claims(self, token: str, now: float) -> tuple[LogoutClaims, UpstreamIssuer]:
        """The claims of a valid back-channel logout token, and its issuer (the ``jti`` is not checked here).

        :raises LogoutTokenRefused: (400) naming the failed check.
        :raises ProviderUnavailable: (503) the issuer's keys cannot be fetched.
        """
        from authserver.identity.oidc.logout import check_logout, peek_logout, refused
        from authserver.identity.oidc.verifier import BearerRefused

        header = peek_logout(token)
        provider = self.providers.get(header.issuer)
        if provider is None or not provider.upstream.logout_audience:
            raise refused("its issuer does not send back-channel logouts here")
        try:
            key = await provider.key(header.kid)
        except BearerRefused as exc:
            raise refused(exc.message.removeprefix("bearer token refused: ")) from None
        return check_logout(token, provider.upstream, key, header.algorithm, now), provider.upstream

    def claims_trusted_issuer(self, token: str) -> bool:
        """Whether ``token`` is a JWT naming an issuer trusted here (nothing verified yet)."""
        from .verifier import BearerRefused, peek

        try:
            return peek(token).issuer in self.providers
        except BearerRefused:
            return False

    async def identity_for(self, token: str, upstream: UpstreamIssuer, now: float) -> tuple[Identity, str | None]:
        """Verify ``token`` as ``upstream`` says (e.g. an ID token, whose audience is a client id), with
        the keys of the provider of the same issuer; not remembered. Also the provider's session id
        (``sid``) when the token carries one."""
        from authserver.identity.oidc.verifier import BearerRefused, peek

        header = peek(token)
        if header.issuer != upstream.issuer or upstream.issuer not in self.providers:
            raise BearerRefused("token refused: its issuer is not trusted here")
        identity, _, stamp = await self._verify(token, upstream, header.algorithm, header.kid, now)
        return identity, stamp.sid

    async def _verify(
        self, token: str, upstream: UpstreamIssuer, algorithm: str, kid: str | None, now: float
    ) -> tuple[Identity, float, Stamp]:
        from authserver.identity.oidc.verifier import verify

        key = await self.providers[upstream.issuer].key(kid)
        claims = verify(token, upstream, key, algorithm, now)
        identity = identity_from_claims(claims, upstream, self.policy)
        stamp = _stamp(claims, upstream.issuer)
        if stamp.sid is not None:  # its Ably tokens are revoked with the provider session it belongs to
            identity = dataclasses.replace(identity, revocation_key=sid_revocation_key(upstream.issuer, stamp.sid))
        others = foreign_prefix(identity.client_id, upstream, (p.upstream for p in self.providers.values()))
        if others is not None:
            raise ForbiddenError(
                f"clientId {identity.client_id!r} begins with {others!r}, the clientId prefix of another trusted issuer"
            )
        if self.taken is not None and await self.taken(identity.client_id):
            raise ForbiddenError(f"clientId {identity.client_id!r} belongs to a registered account here")
        return identity, float(claims["exp"]), stamp

    async def close(self) -> None:
        for provider in self.providers.values():
            await provider.close()
        if self._http is not None:
            await self._http.aclose()


def _stamp(claims: Mapping[str, Any], issuer: str) -> Stamp:
    """What a back-channel logout is matched against: ``sub``, ``sid``, the earlier of ``auth_time`` and ``iat``."""
    found = (claims.get("auth_time"), claims.get("iat"))
    times = [v for v in found if isinstance(v, int | float) and not isinstance(v, bool)]
    sub, sid = claims.get("sub"), claims.get("sid")
    return Stamp(
        issuer,
        sub if isinstance(sub, str) else None,
        sid if isinstance(sid, str) and sid else None,
        float(min(times)) if times else None,
    )


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer`` header, ``None`` without one (another scheme is not ours).

    :raises NotAuthenticatedError: ``Bearer`` with nothing after it.
    """
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    if not token:
        raise NotAuthenticatedError("bearer token refused: empty")
    return token


class BearerAuthenticator:
    """The :class:`~authserver.identity.Authenticator` for upstream bearer tokens."""

    def __init__(self, verifier: UpstreamVerifier | None, *, session_cookie: str = SESSION_COOKIE) -> None:
        self.verifier = verifier
        self.session_cookie = session_cookie

    async def authenticate(self, credentials: Credentials, now: float) -> Identity | None:
        with_session = self.session_cookie in credentials.cookies
        try:
            token = bearer_token(credentials.headers)
        except NotAuthenticatedError:
            if with_session:
                return None  # an empty bearer beside a session: not ours, the session decides
            raise
        if token is None:
            return None
        verifier = self.verifier
        if verifier is None or not verifier.providers:
            if with_session:
                return None
            raise NotAuthenticatedError("bearer token refused: no identity provider is configured (OIDC_ISSUER)")
        if with_session and not verifier.claims_trusted_issuer(token):
            return None
        return await verifier.identity(token, now)
