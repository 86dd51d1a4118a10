"""The wiring of the HTTP layer's collaborators (services.py): what the settings turn on, what a test or
an embedder passes in instead, and what stays off by default."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator

import jwt
import pytest

from authserver.config import Settings
from authserver.core.callers import Identity
from authserver.core.issuance import TokenParams
from authserver.errors import RateLimitedError, UnavailableError
from authserver.identity import Credentials
from authserver.identity.oidc.bearer import BearerAuthenticator
from authserver.identity.passwords import Passwords
from authserver.identity.sessions import SessionStore
from authserver.infra.changes import LocalChanges
from authserver.infra.guards import ConcurrencyGate, MemoryThrottle
from authserver.infra.ratelimits import AuthLimits
from authserver.infra.redislink import RedisChanges
from authserver.infra.sharedthrottle import SharedThrottle
from authserver.storage.postgres import PostgresStorage
from authserver.storage.sqlite import SqliteStorage
from authserver.wiring import Services, build_services, login_gate, memory_throttle, open_storage, upstream_verifier

from conftest import SettingsFactory
from helpers import KEY_SECRET, FakeClock

pytestmark = pytest.mark.anyio

ALICE = Identity(subject="alice", client_id="alice", role="user")
Build = Callable[..., Services]


@pytest.fixture
async def build(make_settings: SettingsFactory, clock: FakeClock, fast_passwords: Passwords) -> AsyncIterator[Build]:
    """``build(**env)``: services from settings; their storage, Redis link and provider client closed after."""
    built: list[Services] = []

    def make(**env: str) -> Services:
        services = build_services(make_settings(**env), clock=clock, passwords=fast_passwords)
        built.append(services)
        return services

    yield make
    for services in built:
        await services.storage.close()
        if services.redis is not None:
            await services.redis.close()
        if services.upstream is not None:
            await services.upstream.close()


class Nobody:
    """An identity source that never recognises anyone."""

    async def authenticate(self, credentials: Credentials, now: float) -> Identity | None:
        return None


async def test_by_default_only_the_local_collaborators_are_built(build: Build) -> None:
    services = build()
    assert isinstance(services.storage, SqliteStorage)
    assert isinstance(services.changes, LocalChanges)
    assert isinstance(services.throttle, MemoryThrottle)
    assert isinstance(services.login_gate, ConcurrencyGate)
    assert (services.redis, services.auth_limits, services.upstream, services.revoker) == (None, None, None, None)
    assert services.offset is not None and not services.offset.measured


async def test_a_bearer_token_is_tried_before_the_session_cookie_and_extra_sources_before_both(
    make_settings: SettingsFactory, clock: FakeClock, fast_passwords: Passwords
) -> None:
    extra = Nobody()
    services = build_services(make_settings(), clock=clock, passwords=fast_passwords, authenticators=(extra,))
    try:
        first, bearer, sessions = services.authenticators
        assert first is extra
        assert isinstance(bearer, BearerAuthenticator)
        assert sessions is services.sessions and isinstance(sessions, SessionStore)
    finally:
        await services.storage.close()


async def test_the_issuer_signs_with_the_first_key_and_the_injected_clock(build: Build, clock: FakeClock) -> None:
    services = build(TOKEN_TTL="600")
    clock.now = 1_800_000_000.0
    claims = jwt.decode(
        services.issuer.jwt(ALICE, TokenParams()).token,
        KEY_SECRET,
        algorithms=["HS256"],
        options={"verify_exp": False, "verify_iat": False},
    )
    assert (claims["iat"], claims["exp"]) == (1_800_000_000, 1_800_000_600)
    assert services.clock is clock


async def test_with_time_sync_the_issuer_reads_the_clock_corrected_by_the_measured_offset(
    build: Build, clock: FakeClock
) -> None:
    synced, plain = build(ABLY_TIME_SYNC="true"), build()
    assert synced.offset is not None
    synced.offset.record(sent=clock(), received=clock(), ably_ms=int(clock() * 1000) + 7_000)
    assert synced.issuer.jwt(ALICE, TokenParams()).issued_ms == int(clock() + 7) * 1000
    assert plain.issuer.jwt(ALICE, TokenParams()).issued_ms == int(clock()) * 1000


async def test_revocable_tokens_bring_a_revoker_and_a_revocable_issuer(build: Build) -> None:
    services = build(ABLY_REVOCABLE_TOKENS="true", TOKEN_IAT_MARGIN="5")
    assert services.revoker is not None
    assert services.issuer.revocable and services.issuer.iat_margin == 5


async def test_auth_rates_turn_on_the_auth_limits(build: Build) -> None:
    services = build(AUTHSERVER_AUTH_RATE_PER_IDENTITY="2/minute")
    limits = services.auth_limits
    assert isinstance(limits, AuthLimits)
    assert limits.per_address is None and limits.per_identity is not None
    await limits.check("alice", "10.0.0.1")
    await limits.check("alice", "10.0.0.2")
    with pytest.raises(RateLimitedError):
        await limits.check("alice", "10.0.0.3")
    assert services.redis is None  # counted in this process's memory


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis URL on a local port that is bound but never listens (nothing is sent to Redis while wiring)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


async def test_redis_shares_the_throttle_and_the_session_changes(build: Build, redis_url: str) -> None:
    services = build(REDIS_URL=redis_url)
    assert services.redis is not None
    assert isinstance(services.changes, RedisChanges) and services.changes.link is services.redis
    assert isinstance(services.throttle, SharedThrottle)
    assert services.throttle.link is services.redis
    assert services.auth_limits is None


async def test_a_redis_url_without_a_port_that_the_settings_accept_can_be_wired(build: Build) -> None:
    # redis://host/db means redis-py's default port, 6379; the settings write it out, since the
    # `limits` storage of the /auth rate limits insists on host:port (it failed at start-up before).
    services = build(REDIS_URL="redis://127.0.0.1/0", AUTHSERVER_AUTH_RATE_PER_IDENTITY="10/minute")
    assert services.redis is not None and services.redis.url == "redis://127.0.0.1:6379/0"


async def test_what_is_passed_in_is_used_instead_of_what_the_settings_name(
    make_settings: SettingsFactory, clock: FakeClock, fast_passwords: Passwords, redis_url: str
) -> None:
    storage = SqliteStorage(":memory:")
    throttle, gate, changes = MemoryThrottle(), ConcurrencyGate(1, 0), LocalChanges()
    services = build_services(
        make_settings(REDIS_URL=redis_url),
        clock=clock,
        passwords=fast_passwords,
        storage=storage,
        throttle=throttle,
        gate=gate,
        changes=changes,
    )
    try:
        assert services.storage is storage
        assert (services.throttle, services.login_gate, services.changes) == (throttle, gate, changes)
    finally:
        await storage.close()
        assert services.redis is not None
        await services.redis.close()


def test_open_storage_names_the_engine_of_database_url(make_settings: SettingsFactory) -> None:
    url = "postgresql://authserver:hunter2@db.example.com/authserver"
    postgres = open_storage(make_settings(DATABASE_URL=url))
    assert isinstance(postgres, PostgresStorage)  # not connected: nothing listens there
    assert "hunter2" not in postgres.description


async def test_open_storage_opens_the_sqlite_file_of_database_url(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    storage = open_storage(settings)
    try:
        assert isinstance(storage, SqliteStorage) and storage.path == settings.database_path
    finally:
        await storage.close()


async def test_the_memory_throttle_follows_the_login_settings(make_settings: SettingsFactory, clock: FakeClock) -> None:
    settings = make_settings(AUTHSERVER_LOGIN_FAILURES="2", AUTHSERVER_LOGIN_FAILURE_WINDOW="120")
    throttle = memory_throttle(settings)
    for _ in range(2):
        await throttle.attempt("alice", "10.0.0.1", clock())
    with pytest.raises(RateLimitedError, match="2 minutes"):
        await throttle.attempt("alice", "10.0.0.1", clock())
    clock.advance(120)
    await throttle.attempt("alice", "10.0.0.1", clock())


async def test_the_login_gate_follows_the_concurrency_settings(make_settings: SettingsFactory) -> None:
    gate = login_gate(make_settings(AUTHSERVER_LOGIN_CONCURRENCY="1", AUTHSERVER_LOGIN_QUEUE="0"))
    release = asyncio.Event()

    async def hold() -> str:
        await release.wait()
        return "done"

    running = asyncio.ensure_future(gate.run(hold))
    await asyncio.sleep(0)
    with pytest.raises(UnavailableError):
        await gate.run(hold)
    release.set()
    assert await running == "done"


def test_without_a_provider_there_is_no_upstream_verifier(make_settings: SettingsFactory, clock: FakeClock) -> None:
    assert upstream_verifier(make_settings(), clock) is None


OIDC = {"OIDC_ISSUER": "https://idp.example.com", "OIDC_AUDIENCE": "chat"}


async def test_each_configured_provider_gets_its_keys_with_a_bounded_wait(
    make_settings: SettingsFactory, clock: FakeClock
) -> None:
    settings: Settings = make_settings(**OIDC)
    verifier = upstream_verifier(settings, clock)
    assert verifier is not None
    try:
        assert list(verifier.providers) == ["https://idp.example.com"]
        provider = verifier.providers["https://idp.example.com"]
        assert provider.upstream.audience == ("chat",) and provider.timeout == 3.0
        assert provider.current is None  # nothing fetched while wiring
        assert verifier.taken is None
    finally:
        await verifier.close()


async def test_a_providers_user_may_not_take_a_registered_accounts_name_or_client_id(build: Build) -> None:
    services = build(**OIDC)
    await services.storage.open()
    await services.users.add("alice", "correct horse", role=None, client_id="alice-id", now=0.0)
    assert services.upstream is not None and services.upstream.taken is not None
    taken = services.upstream.taken
    assert await taken("alice") and await taken("alice-id")
    assert not await taken("bob")
