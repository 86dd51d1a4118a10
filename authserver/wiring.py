"""The one composition root: every collaborator is built here from :class:`Settings`, for the HTTP app,
the command line and the tests alike. :meth:`Services.start` and :meth:`Services.close` run and stop what
the service keeps going in the background (the storage pool, session announcements, the revocation
outbox, the time sync)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from authserver.config import Settings
from authserver.core.issuance import Issuer
from authserver.core.keys import AblyKey
from authserver.identity import Authenticator
from authserver.identity.adminkeys import AdminKeys
from authserver.identity.oidc.backchannel import UpstreamLogouts
from authserver.identity.oidc.bearer import BearerAuthenticator, UpstreamVerifier
from authserver.identity.operations import Operations
from authserver.identity.passwords import PasswordRules, Passwords
from authserver.identity.sessions import SessionStore
from authserver.identity.users import UserStore, outside_policy_problem
from authserver.infra.changes import LocalChanges, SessionChanges
from authserver.infra.guards import ConcurrencyGate, Gate, LoginThrottle, MemoryThrottle, Throttle
from authserver.infra.redislink import RedisChanges, RedisLink
from authserver.infra.timesync import ClockOffset
from authserver.revocation.ablyrest import AblyRestApi
from authserver.revocation.outbox import Revoker
from authserver.storage import Storage, UserStorage
from authserver.storage.sqlite import SqliteStorage

if TYPE_CHECKING:
    from authserver.infra.metrics import Metrics  # the app makes one; prometheus-client only then
    from authserver.infra.ratelimits import AuthLimits

log = logging.getLogger("authserver")

#: How often ABLY_TIME_SYNC measures the offset to Ably's clock.
TIME_SYNC_INTERVAL = 600.0


@dataclass(frozen=True, kw_only=True)
class Services:
    """The service's collaborators, built by :func:`build_services`."""

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
    #: The operator's actions and the admin API keys (the admin API's; the CLI's own are built per command).
    operations: Operations
    admin_keys: AdminKeys
    #: Where counts go (None: nowhere; the app passes its own).
    metrics: Metrics | None = None
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
    #: OpenID Connect back-channel logouts (None: no trusted issuer has them on).
    logouts: UpstreamLogouts | None = None
    _running: list[asyncio.Task[None]] = field(default_factory=list, repr=False, compare=False)

    async def start(self) -> None:
        """Open the storage and start the background work (on the running event loop)."""
        await self.storage.open()
        outside = await self.users.outside_policy()
        if outside:
            log.warning("%s", outside_policy_problem(outside, self.settings.policy_source))
        loop = asyncio.get_running_loop()
        if self.upstream is not None:
            self._running.append(loop.create_task(self.upstream.prefetch()))
        self.changes.start()
        if self.revoker is not None:
            self._running.append(loop.create_task(self.revoker.run(), name="authserver revocations"))
            if self.settings.time_sync:
                self._running.append(loop.create_task(self._sync_time(), name="authserver time"))

    async def close(self) -> None:
        """Stop the background work and release every connection, in the reverse order of :meth:`start`."""
        for task in self._running:
            task.cancel()
        self._running.clear()
        if self.upstream is not None:
            await self.upstream.close()
        if self.revoker is not None:
            await self.revoker.close()
        await self.changes.close()
        if self.redis is not None:
            await self.redis.close()
        await self.storage.close()

    async def _sync_time(self) -> None:
        """Measure the offset to Ably's ``/time`` now and every :data:`TIME_SYNC_INTERVAL` seconds."""
        assert self.offset is not None and self.revoker is not None
        while True:
            try:
                sent = self.clock()
                ably_ms = await self.revoker.time_ms()
                offset = self.offset.record(sent=sent, received=self.clock(), ably_ms=ably_ms)
                if self.metrics is not None:
                    self.metrics.clock_offset_measured(offset)
                log.info("clock offset to Ably: %+.3f s", offset)
            except Exception as exc:
                log.warning("clock offset to Ably not measured: %s", type(exc).__name__)
            await asyncio.sleep(TIME_SYNC_INTERVAL)


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
    # argon2id costs 64 MiB and tens of ms per check: a couple per core at once, a short queue;
    # and at most PER_ADDRESS_IN_FLIGHT logins in flight from one address.
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
    settings: Settings,
    clock: Callable[[], float],
    users: UserStorage | None = None,
    *,
    on_fetch: Callable[[str], None] | None = None,
) -> UpstreamVerifier | None:
    """The verifier of upstream bearer tokens for the configured issuers (None without any). With
    ``users``, a provider's user whose clientId is a registered account's username or clientId is refused."""
    if not settings.oidc_issuers:
        return None
    import httpx  # these two only with a provider configured (memory per worker)

    from authserver.identity.oidc.jwks import ProviderKeys

    timeout = httpx.Timeout(PROVIDER_TIMEOUT[0], connect=PROVIDER_TIMEOUT[1])
    http = httpx.AsyncClient(timeout=timeout, headers={"User-Agent": "authserver"})
    providers = {i.issuer: ProviderKeys(i, http, clock, timeout=3.0, on_fetch=on_fetch) for i in settings.oidc_issuers}

    async def taken(client_id: str) -> bool:
        assert users is not None
        return await users.get(client_id) is not None or await users.by_client_id(client_id) is not None

    return UpstreamVerifier(providers, settings.policy, http=http, taken=taken if users is not None else None)


@dataclass(frozen=True)
class _Shared:
    """What Redis (REDIS_URL) or the `limits` library provide, when configured."""

    changes: SessionChanges | None = None
    throttle: Throttle | None = None
    auth_limits: AuthLimits | None = None


def _shared(settings: Settings, link: RedisLink | None) -> _Shared:
    """Session announcements and the login throttle shared through Redis, and the optional /auth limits."""
    rates = bool(settings.auth_rate_per_identity or settings.auth_rate_per_address)
    if link is None and not rates:
        return _Shared()
    # the `limits` library only when something counts with it (memory per worker)
    from authserver.infra.ratelimits import AuthLimits, Limiter, parse_rate
    from authserver.infra.sharedthrottle import SharedThrottle

    limiter = Limiter(link)
    shared = _Shared()
    if link is not None:
        throttle = SharedThrottle(
            link,
            per_address=settings.login_failures_per_address,
            per_user_address=settings.login_failures,
            window=settings.login_failure_window,
        )
        shared = _Shared(changes=RedisChanges(link), throttle=throttle)
    if rates:
        auth_limits = AuthLimits(
            limiter,
            per_identity=parse_rate(settings.auth_rate_per_identity) if settings.auth_rate_per_identity else None,
            per_address=parse_rate(settings.auth_rate_per_address) if settings.auth_rate_per_address else None,
        )
        shared = replace(shared, auth_limits=auth_limits)
    return shared


def _logouts(
    settings: Settings,
    storage: Storage,
    link: RedisLink | None,
    changes: SessionChanges,
    revoker: Revoker | None,
    upstream: UpstreamVerifier | None,
) -> UpstreamLogouts | None:
    """Back-channel logouts, when a trusted issuer has them on (and the verifier told of them); logout
    token ids shared through Redis when configured, else through the database."""
    if upstream is None or not any(i.logout_audience for i in settings.oidc_issuers):
        return None
    from authserver.infra.seenids import SharedSeenIds

    seen = storage.logouts if link is None else SharedSeenIds(link, storage.logouts)
    logouts = UpstreamLogouts(storage.logouts, seen, changes, revoke=revoker, recheck=settings.session_recheck)
    upstream.logouts = logouts
    return logouts


def _issuer(settings: Settings, clock: Callable[[], float]) -> Issuer:
    return Issuer(
        keys=settings.ably_keys,
        policy=settings.policy,
        key_capability=settings.key_capability,
        token_ttl=settings.token_ttl,
        token_max_ttl=settings.token_max_ttl,
        clock=clock,
        revocable=settings.revocable_tokens,
        iat_margin=settings.iat_margin,
    )


def _redis_link(settings: Settings, metrics: Metrics | None) -> RedisLink | None:
    if not settings.redis_url:
        return None
    # each failed Redis operation, by what it was for
    return RedisLink(settings.redis_url, on_error=None if metrics is None else metrics.redis_error)


def _revoker(
    settings: Settings, storage: Storage, issuer: Issuer, clock: Callable[[], float], metrics: Metrics | None
) -> Revoker | None:
    """The service's revoker (None: ABLY_REVOCABLE_TOKENS=false, or no key)."""
    if not (settings.revocable_tokens and settings.ably_keys):
        return None
    return Revoker(
        storage.outbox,
        settings.ably_keys,
        AblyRestApi(settings.ably_endpoint),
        clock=clock,
        issued_before_ms=issuer.revocation_cutoff,
        report=None if metrics is None else metrics.revocation_batch,
    )


def _sessions(settings: Settings, storage: Storage, changes: SessionChanges, revoker: Revoker | None) -> SessionStore:
    return SessionStore(
        storage.sessions,
        settings.session_secret,
        ttl=settings.session_ttl,
        demo_login=settings.demo_login,
        recheck=settings.session_recheck,
        changes=changes,
        revoke=revoker,
    )


def build_services(
    settings: Settings,
    *,
    clock: Callable[[], float],
    metrics: Metrics | None = None,
    passwords: Passwords | None = None,
    authenticators: tuple[Authenticator, ...] = (),
    storage: Storage | None = None,
    throttle: Throttle | None = None,
    gate: Gate | None = None,
    changes: SessionChanges | None = None,
) -> Services:
    """Wire the domain objects from settings. ``authenticators`` are tried before the session cookie;
    the rest default to the storage ``DATABASE_URL`` names and, with ``REDIS_URL``, to limits and
    session announcements shared through Redis (else one process's in-memory versions). ``metrics``
    hear of failed Redis operations, provider key fetches, revocation batches and the clock offset."""
    storage = storage or open_storage(settings)
    link = _redis_link(settings, metrics)
    shared = _shared(settings, link)
    changes = changes or shared.changes or LocalChanges()
    throttle = throttle or shared.throttle
    offset = ClockOffset(clock)
    issuer = _issuer(settings, offset.now if settings.time_sync else clock)
    revoker = _revoker(settings, storage, issuer, clock, metrics)
    sessions = _sessions(settings, storage, changes, revoker)
    users = UserStore(storage.users, passwords or Passwords(), settings.policy, changes, revoker, _rules(settings))
    # each fetch of a provider's keys, by outcome
    upstream = upstream_verifier(
        settings, clock, storage.users, on_fetch=None if metrics is None else metrics.jwks_fetch
    )
    logouts = _logouts(settings, storage, link, changes, revoker, upstream)
    return Services(
        settings=settings,
        storage=storage,
        users=users,
        sessions=sessions,
        issuer=issuer,
        # A bearer token decides before any session cookie sent along with it.
        authenticators=(*authenticators, BearerAuthenticator(upstream), sessions),
        clock=clock,
        throttle=throttle or memory_throttle(settings),
        login_gate=gate or login_gate(settings),
        changes=changes,
        operations=Operations(users, storage.sessions, storage.outbox, revoker),
        admin_keys=AdminKeys(storage.admin_keys),
        metrics=metrics,
        redis=link,
        auth_limits=shared.auth_limits,
        upstream=upstream,
        revoker=revoker,
        offset=offset,
        logouts=logouts,
    )


def command_revoker(
    settings: Settings, storage: Storage, keys: tuple[AblyKey, ...], endpoint: str | None
) -> Revoker | None:
    """The revoker of a command-line process (None: revocation off, or no key known): it queues in
    ``storage``'s outbox and delivers to ``endpoint`` with ``keys``."""
    if not settings.revocable_tokens or not keys:
        return None
    margin: int = settings.iat_margin
    return Revoker(
        storage.outbox,
        keys,
        AblyRestApi(endpoint, timeout=5.0),
        clock=time.time,
        issued_before_ms=lambda targets: Issuer.issued_before_at(time.time(), margin),
    )


@dataclass(frozen=True, kw_only=True)
class Accounts:
    """The accounts of the database, for a command that changes them: its changes reach the session
    memory of every running instance at once through Redis (when configured), and queue revocations."""

    storage: Storage
    users: UserStore
    revoker: Revoker | None
    link: RedisLink | None
    changes: RedisChanges | None

    @property
    def operations(self) -> Operations:
        """The operator's actions on these accounts (the admin API runs the same)."""
        return Operations(self.users, self.storage.sessions, self.storage.outbox, self.revoker)

    async def start(self) -> None:
        await self.storage.open()

    async def close(self) -> None:
        await self.storage.close()
        if self.link is not None:
            await self.link.close()


def _rules(settings: Settings) -> PasswordRules:
    return PasswordRules(min_length=settings.password_min_length)


def build_accounts(settings: Settings, *, keys: tuple[AblyKey, ...], endpoint: str | None) -> Accounts:
    """:class:`Accounts` of ``settings``' database, revoking with ``keys`` at ``endpoint``."""
    storage = open_storage(settings)
    link = RedisLink(settings.redis_url) if settings.redis_url else None
    changes = RedisChanges(link) if link is not None else None
    revoker = command_revoker(settings, storage, keys, endpoint)
    users = UserStore(storage.users, Passwords(), settings.policy, changes, revoker, _rules(settings))
    return Accounts(storage=storage, users=users, revoker=revoker, link=link, changes=changes)
