"""Login sessions: a signed random id in the cookie, only its hash in the database, re-checked on use."""

from __future__ import annotations

import hashlib
from typing import Any

import anyio
import pytest

from authserver.core.callers import Identity
from authserver.core.policy import load_policy
from authserver.errors import (
    AccountRemovedError,
    ForbiddenError,
    LoggedOutElsewhereError,
    LoggedOutError,
    NotAuthenticatedError,
    PasswordChangedError,
    SessionEndedError,
)
from authserver.identity import Credentials, authenticate_any
from authserver.identity.passwords import Passwords
from authserver.identity.sessions import COOKIE_NAME, SessionStore
from authserver.identity.users import UserStore
from authserver.infra.changes import LocalChanges
from authserver.storage import SessionRecord, Storage

from conftest import Reopen, raw_sql

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000.0
TTL = 3600
SECRET = "session-secret-for-tests-0123456789-abcdef"
ALICE = Identity(subject="alice", client_id="alice", role="user", source="account")
DORA = Identity(subject="dora", client_id="dora", role="demo", source="demo")


def with_cookie(cookie: str) -> Credentials:
    return Credentials(cookies={COOKIE_NAME: cookie})


async def refused_for_good(
    sessions: SessionStore, cookie: str, error: type[SessionEndedError], code: int, message: str
) -> None:
    """The cookie of a session ended elsewhere gets a final 403 with the reason's code and words."""
    with pytest.raises(error) as refused:
        await sessions.authenticate(with_cookie(cookie), NOW)
    assert (refused.value.status, refused.value.code, refused.value.message) == (403, code, message)


@pytest.fixture
def changes() -> LocalChanges:
    """What the users and sessions of one process share: announcements of changes."""
    return LocalChanges()


@pytest.fixture
async def users(storage: Storage, changes: LocalChanges) -> UserStore:
    store = UserStore(
        storage.users, Passwords(time_cost=1, memory_cost=8192, parallelism=1), load_policy(None), changes
    )
    await store.add("alice", "correct horse", role=None, client_id=None, now=NOW)
    return store


@pytest.fixture
def sessions(storage: Storage, users: UserStore, changes: LocalChanges) -> SessionStore:
    return SessionStore(storage.sessions, SECRET, ttl=TTL, demo_login=True, changes=changes)


@pytest.fixture
async def cookie(sessions: SessionStore) -> str:
    """A session of alice's account, created at NOW."""
    return await sessions.create(ALICE, NOW)


async def test_created_session_authenticates_as_its_identity(sessions: SessionStore, cookie: str) -> None:
    assert await sessions.authenticate(with_cookie(cookie), NOW) == ALICE
    assert await sessions.authenticate(with_cookie(cookie), NOW + TTL - 1) == ALICE


async def test_demo_session_authenticates_as_the_demo_identity(sessions: SessionStore) -> None:
    cookie = await sessions.create(DORA, NOW)
    assert await sessions.authenticate(with_cookie(cookie), NOW + 1) == DORA


async def test_every_session_has_its_own_cookie(sessions: SessionStore, cookie: str) -> None:
    assert await sessions.create(ALICE, NOW) != cookie


@pytest.mark.parametrize(
    "credentials",
    [Credentials(), Credentials(cookies={"other": "x"}), Credentials(headers={"authorization": "Bearer x"})],
)
async def test_no_session_cookie_is_not_for_this_authenticator(
    sessions: SessionStore, credentials: Credentials
) -> None:
    assert await sessions.authenticate(credentials, NOW) is None


async def test_session_store_is_an_authenticator(sessions: SessionStore, cookie: str) -> None:
    assert await authenticate_any((sessions,), with_cookie(cookie), NOW) == ALICE
    assert await authenticate_any((sessions,), Credentials(), NOW) is None


def _tampered(cookie: str) -> list[str]:
    session_id, signature = cookie.rsplit(".", 1)
    flipped = ("A" if session_id[0] != "A" else "B") + session_id[1:]
    return [
        "",
        "garbage",
        session_id,  # unsigned
        f"{flipped}.{signature}",  # changed id, old signature
        f"{session_id}.{signature[::-1]}",  # changed signature
        f"{session_id}.",
        f".{signature}",
        cookie + "x",
    ]


async def test_forged_or_tampered_cookie_is_not_authenticated(sessions: SessionStore, cookie: str) -> None:
    for forged in _tampered(cookie):
        with pytest.raises(NotAuthenticatedError) as exc_info:
            await sessions.authenticate(with_cookie(forged), NOW)
        assert exc_info.value.status == 401, forged


async def test_cookie_signed_with_another_secret_is_refused(storage: Storage, sessions: SessionStore) -> None:
    other = SessionStore(storage.sessions, SECRET + "-other", ttl=TTL)
    cookie = await other.create(ALICE, NOW)  # the record exists in the shared database...
    assert await other.authenticate(with_cookie(cookie), NOW) == ALICE
    with pytest.raises(NotAuthenticatedError, match=r"^session is not valid; log in again$"):
        await sessions.authenticate(with_cookie(cookie), NOW)  # ...but the signature is not ours


@pytest.mark.parametrize("later", [TTL, TTL + 0.001, TTL * 10])
async def test_session_expires_after_its_ttl(sessions: SessionStore, cookie: str, later: float) -> None:
    with pytest.raises(NotAuthenticatedError, match=r"^session has expired; log in again$"):
        await sessions.authenticate(with_cookie(cookie), NOW + later)


async def test_expired_session_stays_ended(sessions: SessionStore, cookie: str) -> None:
    for later in (TTL, TTL + 1, 10 * TTL):
        with pytest.raises(NotAuthenticatedError, match="expired"):
            await sessions.authenticate(with_cookie(cookie), NOW + later)


async def test_expired_sessions_are_purged_when_a_new_one_is_created(
    storage: Storage, sessions: SessionStore, cookie: str
) -> None:
    await sessions.create(DORA, NOW + TTL)
    assert await raw_sql(storage, "SELECT username FROM sessions") == [("dora",)]


async def test_a_session_logged_out_is_refused_for_good_saying_so(sessions: SessionStore, cookie: str) -> None:
    """Another window holding the same cookie learns why: a final 403 with its own code."""
    await sessions.end(cookie)
    await refused_for_good(sessions, cookie, LoggedOutError, 40304, "you were logged out in another window")


async def test_log_out_everywhere_tells_the_other_devices_why(sessions: SessionStore, cookie: str) -> None:
    other_device = await sessions.create(ALICE, NOW)
    await sessions.end_all(ALICE)
    for ended in (cookie, other_device):
        await refused_for_good(
            sessions, ended, LoggedOutElsewhereError, 40301, "you were logged out from another device"
        )


async def test_a_password_change_tells_the_sessions_it_ended_why(
    sessions: SessionStore, users: UserStore, cookie: str
) -> None:
    await users.set_password("alice", "battery staple")
    await refused_for_good(sessions, cookie, PasswordChangedError, 40302, "your password was changed; log in again")


async def test_why_a_session_ended_is_kept_only_until_it_would_have_expired(
    storage: Storage, sessions: SessionStore, cookie: str
) -> None:
    await sessions.end_all(ALICE)
    assert await raw_sql(storage, "SELECT reason FROM ended_sessions") == [("everywhere",)]  # the reason, no more
    with pytest.raises(NotAuthenticatedError, match=r"^session has ended; log in again$"):
        await sessions.authenticate(with_cookie(cookie), NOW + TTL)
    await sessions.create(DORA, NOW + TTL)  # the next login purges what has expired
    assert await raw_sql(storage, "SELECT reason FROM ended_sessions") == []


async def test_ending_one_session_leaves_the_others(sessions: SessionStore, cookie: str) -> None:
    second = await sessions.create(ALICE, NOW)
    await sessions.end(cookie)
    assert await sessions.authenticate(with_cookie(second), NOW) == ALICE


@pytest.mark.parametrize("cookie_value", [None, "", "garbage"])
async def test_ending_without_a_valid_cookie_does_nothing(
    sessions: SessionStore, cookie: str, cookie_value: str | None
) -> None:
    await sessions.end(cookie_value)
    assert await sessions.authenticate(with_cookie(cookie), NOW) == ALICE


async def test_account_disabled_after_login_is_forbidden(sessions: SessionStore, users: UserStore, cookie: str) -> None:
    await users.set_disabled("alice", True)
    with pytest.raises(ForbiddenError, match=r"^account is disabled$"):
        await sessions.authenticate(with_cookie(cookie), NOW)
    await users.set_disabled("alice", False)
    assert await sessions.authenticate(with_cookie(cookie), NOW) == ALICE


async def test_account_removed_after_login_is_refused_for_good_saying_so(
    sessions: SessionStore, users: UserStore, cookie: str
) -> None:
    await users.remove("alice")
    await refused_for_good(sessions, cookie, AccountRemovedError, 40303, "your account was removed")


async def test_account_row_deleted_behind_the_stores_back_must_log_in_again(
    storage: Storage, sessions: SessionStore, cookie: str
) -> None:
    await raw_sql(storage, "DELETE FROM users WHERE username = 'alice'")
    with pytest.raises(NotAuthenticatedError, match=r"^account no longer exists; log in again$"):
        await sessions.authenticate(with_cookie(cookie), NOW)


async def test_new_account_of_the_same_name_does_not_revive_an_old_session(
    sessions: SessionStore, users: UserStore, cookie: str
) -> None:
    await users.remove("alice")
    await users.add("alice", "another password", role=None, client_id=None, now=NOW)
    with pytest.raises(AccountRemovedError):
        await sessions.authenticate(with_cookie(cookie), NOW)


async def test_role_changed_after_login_applies_to_the_session(
    sessions: SessionStore, users: UserStore, cookie: str
) -> None:
    await users.set_role("alice", "admin")
    identity = await sessions.authenticate(with_cookie(cookie), NOW)
    assert identity is not None
    assert identity.role == "admin"


async def test_database_stores_only_a_hash_of_the_session_id(
    storage: Storage, sessions: SessionStore, cookie: str
) -> None:
    session_id = cookie.rsplit(".", 1)[0]  # itsdangerous: value.signature
    rows = await raw_sql(storage, "SELECT * FROM sessions")
    assert len(rows) == 1
    stored = " ".join(str(value) for value in rows[0])
    assert session_id not in stored
    assert cookie not in stored
    assert hashlib.sha256(session_id.encode("ascii")).hexdigest() in rows[0]


async def test_session_id_is_long_and_random(sessions: SessionStore) -> None:
    session_ids = {(await sessions.create(ALICE, NOW)).rsplit(".", 1)[0] for _ in range(20)}
    assert len(session_ids) == 20
    assert all(len(session_id) >= 32 for session_id in session_ids)


async def test_sessions_survive_a_restart_with_the_same_secret(reopen: Reopen, cookie: str) -> None:
    reopened = await reopen()
    try:
        restarted = SessionStore(reopened.sessions, SECRET, ttl=TTL)
        assert await restarted.authenticate(with_cookie(cookie), NOW) == ALICE
    finally:
        await reopened.close()


async def test_demo_session_ends_once_demo_login_is_switched_off(storage: Storage, sessions: SessionStore) -> None:
    cookie = await sessions.create(DORA, NOW)
    restarted = SessionStore(storage.sessions, SECRET, ttl=TTL, demo_login=False)
    with pytest.raises(NotAuthenticatedError, match="demo session has ended"):
        await restarted.authenticate(with_cookie(cookie), NOW + 1)


async def test_a_session_of_another_source_keeps_its_identity_whatever_demo_mode_says(
    storage: Storage, sessions: SessionStore
) -> None:
    upstream = Identity(subject="u-17", client_id="carol", role="user", source="oidc:https://issuer.example")
    cookie = await sessions.create(upstream, NOW)
    for demo_login in (True, False):
        restarted = SessionStore(storage.sessions, SECRET, ttl=TTL, demo_login=demo_login)
        assert await restarted.authenticate(with_cookie(cookie), NOW + 1) == upstream


async def test_a_session_of_another_source_ends_once_an_account_holds_its_name(
    sessions: SessionStore, users: UserStore
) -> None:
    upstream = Identity(subject="u-17", client_id="carol", role="user", source="oidc:https://issuer.example")
    cookie = await sessions.create(upstream, NOW)
    await users.add("carol", "pw-for-carol", role="admin", client_id=None, now=NOW)
    with pytest.raises(NotAuthenticatedError, match=r"^oidc:https://issuer.example session has ended"):
        await sessions.authenticate(with_cookie(cookie), NOW)


@pytest.mark.parametrize(("username", "client_id"), [("dora", None), ("someone", "dora")])
async def test_demo_session_ends_once_an_account_holds_its_name(
    sessions: SessionStore, users: UserStore, username: str, client_id: str | None
) -> None:
    cookie = await sessions.create(DORA, NOW)
    assert await sessions.authenticate(with_cookie(cookie), NOW) == DORA
    await users.add(username, "pw-for-the-account", role="admin", client_id=client_id, now=NOW)
    with pytest.raises(NotAuthenticatedError, match="demo session has ended"):
        await sessions.authenticate(with_cookie(cookie), NOW)  # even within the recheck interval


async def test_changing_the_password_ends_every_session_of_the_account(
    sessions: SessionStore, users: UserStore, cookie: str
) -> None:
    assert await sessions.authenticate(with_cookie(cookie), NOW) == ALICE
    await users.set_password("alice", "new horse")
    with pytest.raises(PasswordChangedError):
        await sessions.authenticate(with_cookie(cookie), NOW)


async def test_remembered_answers_from_memory_only_after_a_resolution(sessions: SessionStore, cookie: str) -> None:
    assert sessions.remembered(with_cookie(cookie), NOW) is None
    await sessions.authenticate(with_cookie(cookie), NOW)
    assert sessions.remembered(with_cookie(cookie), NOW + 0.5) == ALICE
    assert sessions.remembered(with_cookie(cookie), NOW + sessions.recheck) is None  # time to look again


async def test_a_change_made_by_another_process_is_seen_within_the_recheck_interval(
    reopen: Reopen, sessions: SessionStore, cookie: str
) -> None:
    await sessions.authenticate(with_cookie(cookie), NOW)
    other_process = await reopen()
    await raw_sql(other_process, "UPDATE users SET disabled = TRUE WHERE username = 'alice'")
    await other_process.close()
    assert await sessions.authenticate(with_cookie(cookie), NOW + 0.5) == ALICE  # still remembered
    with pytest.raises(ForbiddenError):
        await sessions.authenticate(with_cookie(cookie), NOW + sessions.recheck)


async def test_an_announced_change_is_seen_at_once(sessions: SessionStore, changes: LocalChanges, cookie: str) -> None:
    assert await sessions.authenticate(with_cookie(cookie), NOW) == ALICE
    assert sessions.remembered(with_cookie(cookie), NOW) == ALICE
    changes.notify()  # what a change made elsewhere arrives as
    assert sessions.remembered(with_cookie(cookie), NOW) is None


class Interrupted(LocalChanges):
    """Shared announcements that lost their connection: changes elsewhere may be missed."""

    complete = False


async def test_a_long_memory_shrinks_to_a_second_while_announcements_may_be_missed(storage: Storage) -> None:
    users = UserStore(storage.users, Passwords(time_cost=1, memory_cost=8192, parallelism=1), load_policy(None))
    await users.add("alice", "correct horse", role=None, client_id=None, now=NOW)
    steady = SessionStore(storage.sessions, SECRET, ttl=TTL, recheck=3600)
    interrupted = SessionStore(storage.sessions, SECRET, ttl=TTL, recheck=3600, changes=Interrupted())
    cookie = await steady.create(ALICE, NOW)
    for sessions in (steady, interrupted):
        assert await sessions.authenticate(with_cookie(cookie), NOW) == ALICE
    assert steady.remembered(with_cookie(cookie), NOW + 1.5) == ALICE
    assert interrupted.remembered(with_cookie(cookie), NOW + 1.5) is None


class CountingLookups:
    """A session storage that counts lookups and holds each until released."""

    reads_inline = False  # its lookups suspend (whatever the storage it wraps does)

    def __init__(self, storage: Storage) -> None:
        self.inner = storage.sessions
        self.lookups = 0
        self.release = anyio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def lookup(self, id_hash: str) -> SessionRecord | None:
        self.lookups += 1
        await self.release.wait()
        return await self.inner.lookup(id_hash)


async def test_concurrent_misses_share_one_lookup_and_a_change_starts_a_new_one(
    storage: Storage, users: UserStore
) -> None:
    counting = CountingLookups(storage)
    sessions = SessionStore(counting, SECRET, ttl=TTL)
    cookie = await sessions.create(ALICE, NOW)
    answers: list[Identity | None] = []

    async def ask() -> None:
        answers.append(await sessions.authenticate(with_cookie(cookie), NOW))

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(ask)
        await anyio.wait_all_tasks_blocked()
        assert counting.lookups == 1
        sessions.forget()  # a change announced while the lookup is under way...
        group.start_soon(ask)
        await anyio.wait_all_tasks_blocked()
        assert counting.lookups == 2  # ...is not answered by the lookup that may predate it
        counting.release.set()
    assert answers == [ALICE] * 6
