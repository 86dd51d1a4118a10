"""The collaborators the HTTP layer uses, built once by the app factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from authserver.config import Settings
from authserver.core.issuance import Issuer
from authserver.identity import Authenticator
from authserver.identity.oidc.bearer import BearerAuthenticator, UpstreamVerifier
from authserver.identity.passwords import Passwords
from authserver.identity.sessions import SessionStore
from authserver.identity.users import UserStore
from authserver.infra.changes import LocalChanges, SessionChanges
from authserver.infra.guards import ConcurrencyGate, Gate, LoginThrottle, MemoryThrottle, Throttle
from authserver.infra.redislink import RedisChanges, RedisLink
from authserver.infra.timesync import ClockOffset
from authserver.revocation.ablyrest import AblyRestApi
from authserver.revocation.outbox import Revoker
from authserver.storage import Storage, UserStorage
from authserver.storage.sqlite import SqliteStorage

if TYPE_CHECKING:
    from authserver.infra.ratelimits import AuthLimits


@dataclass(frozen=True)
class Services:
    settings: Settings
    storage: Storage
    users: UserStore
    sessions: SessionStore
    issuer: Issuer
    authenticators: tuple[Authenticator, ...]
    clock: Callable[[], float]
    throttle: Throttle
    login_gate: Gate
    changes: SessionChanges
    #: Redis, when REDIS_URL is set: shared limits and session announcements.
    redis: RedisLink | None = None
    #: The optional /auth limits (None: off, the default).
    auth_limits: AuthLimits | None = None
    #: Trusted OpenID Connect providers (None: none configured).
    upstream: UpstreamVerifier | None = None
    #: Revocations through Ably (None: ABLY_REVOCABLE_TOKENS=false).
    revoker: Revoker | None = None
    #: The offset to Ably's clock applied to issuance (ABLY_TIME_SYNC; zero otherwise).
    offset: ClockOffset | None = None


def memory_throttle(settings: Settings) -> MemoryThrottle:
    """The failed-login throttle of one process, with the limits of ``settings``."""
    return MemoryThrottle(
        LoginThrottle(
            per_address=settings.login_failures_per_address,
            per_user_address=settings.login_failures,
            window=float(settings.login_failure_window),
        )
    )


def login_gate(settings: Settings) -> ConcurrencyGate:
    # argon2id costs 64 MiB and tens of ms per check: a couple per core at once, a short queue.
    return ConcurrencyGate(slots=settings.login_concurrency, queue=settings.login_queue)


def open_storage(settings: Settings) -> Storage:
    """The storage engine ``DATABASE_URL`` names, not yet connected for a server (``await storage.open()``).

    :raises DatabaseError: a SQLite file that cannot be opened.
    """
    if settings.database_engine == "postgresql":
        from authserver.storage.postgres import PostgresStorage  # the driver is imported only when used

        return PostgresStorage(settings.database_url)
    return SqliteStorage(settings.database_path)


#: Bounded waits (seconds) for a provider's discovery document and keys: a slow provider never holds /auth longer.
PROVIDER_TIMEOUT = (3.0, 2.0)  # (each operation, connect)


def upstream_verifier(
    settings: Settings, clock: Callable[[], float], users: UserStorage | None = None
) -> UpstreamVerifier | None:
    """The verifier of upstream bearer tokens for the configured issuers (None without any). With
    ``users``, a provider's user whose clientId is a registered account's username or clientId is refused."""
    if not settings.oidc_issuers:
        return None
    import httpx  # these two only with a provider configured (memory per worker)

    from authserver.identity.oidc.jwks import ProviderKeys

    timeout = httpx.Timeout(PROVIDER_TIMEOUT[0], connect=PROVIDER_TIMEOUT[1])
    http = httpx.AsyncClient(timeout=timeout, headers={"User-Agent": "authserver"})
    providers = {i.issuer: ProviderKeys(i, http, clock, timeout=3.0) for i in settings.oidc_issuers}

    async def taken(client_id: str) -> bool:
        assert users is not None
        return await users.get(client_id) is not None or await users.by_client_id(client_id) is not None

    return UpstreamVerifier(providers, settings.policy, http=http, taken=taken if users is not None else None)


def build_services(
    settings: Settings,
    *,
    clock: Callable[[], float],
    passwords: Passwords | None = None,
    authenticators: tuple[Authenticator, ...] = (),
    storage: Storage | None = None,
    throttle: Throttle | None = None,
    gate: Gate | None = None,
    changes: SessionChanges | None = None,
) -> Services:
    """Wire the domain objects from settings. ``authenticators`` are tried before the session cookie;
    the rest default to the storage ``DATABASE_URL`` names and, with ``REDIS_URL``, to limits and
    session announcements shared through Redis (else one process's in-memory versions)."""
    storage = storage or open_storage(settings)
    link = RedisLink(settings.redis_url) if settings.redis_url else None
    rates = bool(settings.auth_rate_per_identity or settings.auth_rate_per_address)
    if link is not None or rates:
        # the `limits` library only when something counts with it (memory per worker)
        from authserver.infra.ratelimits import AuthLimits, Limiter, SharedThrottle, parse_rate

        limiter = Limiter(link)
    if link is not None:
        changes = changes or RedisChanges(link)
        throttle = throttle or SharedThrottle(
            limiter,
            per_address=settings.login_failures_per_address,
            per_user_address=settings.login_failures,
            window=settings.login_failure_window,
        )
    changes = changes or LocalChanges()
    auth_limits = None
    if rates:
        auth_limits = AuthLimits(
            limiter,
            per_identity=parse_rate(settings.auth_rate_per_identity) if settings.auth_rate_per_identity else None,
            per_address=parse_rate(settings.auth_rate_per_address) if settings.auth_rate_per_address else None,
        )
    offset = ClockOffset(clock)
    issuer = Issuer(
        keys=settings.ably_keys,
        policy=settings.policy,
        key_capability=settings.key_capability,
        token_ttl=settings.token_ttl,
        token_max_ttl=settings.token_max_ttl,
        clock=offset.now if settings.time_sync else clock,
        revocable=settings.revocable_tokens,
        iat_margin=settings.iat_margin,
    )
    revoker = None
    if settings.revocable_tokens and settings.ably_keys:
        revoker = Revoker(
            storage.outbox,
            settings.ably_keys,
            AblyRestApi(settings.ably_endpoint),
            clock=clock,
            issued_before_ms=issuer.revocation_cutoff,
        )
    sessions = SessionStore(
        storage.sessions,
        settings.session_secret,
        ttl=settings.session_ttl,
        demo_login=settings.demo_login,
        recheck=settings.session_recheck,
        changes=changes,
        revoke=revoker,
    )
    users = UserStore(storage.users, passwords or Passwords(), settings.policy, changes, revoker)
    upstream = upstream_verifier(settings, clock, storage.users)
    return Services(
        settings,
        storage,
        users,
        sessions,
        issuer,
        # A bearer token decides before any session cookie sent along with it.
        (*authenticators, BearerAuthenticator(upstream), sessions),
        clock,
        throttle or memory_throttle(settings),
        gate or login_gate(settings),
        changes,
        link,
        auth_limits,
        upstream,
        revoker,
        offset,
    )
