"""Accounts in every storage engine: administration, password logins and demo logins."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import pytest

from authserver.core.callers import Identity
from authserver.core.policy import Policy, load_policy, parse_policy
from authserver.errors import ClientIdError, ForbiddenError, NotAuthenticatedError, UserError
from authserver.identity.passwords import MAX_PASSWORD_LENGTH, Passwords
from authserver.identity.users import BAD_CREDENTIALS, User, UserStore
from authserver.storage import Storage

from conftest import Reopen

NOW = 1_700_000_000.0
PASSWORD = "correct horse"


pytestmark = pytest.mark.anyio


class AddUser(Protocol):
    async def __call__(
        self, username: str, password: str = ..., *, role: str | None = ..., client_id: str | None = ...
    ) -> User: ...


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords(time_cost=1, memory_cost=8192, parallelism=1)


@pytest.fixture
def store(storage: Storage, passwords: Passwords) -> UserStore:
    return UserStore(storage.users, passwords, load_policy(None))


@pytest.fixture
def add(store: UserStore) -> AddUser:
    """``store.add`` with a fixed clock, the test password and policy defaults."""

    async def add_user(
        username: str, password: str = PASSWORD, *, role: str | None = None, client_id: str | None = None
    ) -> User:
        return await store.add(username, password, role=role, client_id=client_id, now=NOW)

    return add_user


# --- administration -------------------------------------------------------------------------------


async def test_added_user_gets_the_default_role_and_their_name_as_client_id(store: UserStore, add: AddUser) -> None:
    user = await add("alice")
    assert (user.username, user.client_id, user.role, user.disabled) == ("alice", "alice", "user", False)
    assert await store.get("alice") == user
    assert await store.by_client_id("alice") == user


async def test_added_user_may_have_a_role_and_a_client_id(store: UserStore, add: AddUser) -> None:
    await add("bob", role="admin", client_id="bob@example.com")
    user = await store.get("bob")
    assert user is not None
    assert (user.client_id, user.role) == ("bob@example.com", "admin")
    assert await store.by_client_id("bob@example.com") == user
    assert await store.by_client_id("bob") is None


async def test_password_is_stored_only_as_an_argon2id_hash(storage: Storage, add: AddUser) -> None:
    await add("alice")
    stored = await storage.users.all()
    assert len(stored) == 1
    assert PASSWORD not in repr(stored[0]) and PASSWORD not in stored[0].password_hash
    assert stored[0].password_hash.startswith("$argon2id$")


async def test_repr_of_a_user_hides_the_password_hash(add: AddUser) -> None:
    user = await add("alice")
    assert "$argon2id$" not in repr(user)
    assert user.password_hash not in repr(user)


async def test_unknown_user_is_none(store: UserStore) -> None:
    assert await store.get("nobody") is None
    assert await store.by_client_id("nobody") is None


async def test_list_is_every_user_sorted_by_username(store: UserStore, add: AddUser) -> None:
    assert await store.list() == []
    for name in ("carol", "alice", "bob"):
        await add(name)
    assert [user.username for user in await store.list()] == ["alice", "bob", "carol"]


async def test_users_persist_in_the_database(reopen: Reopen, passwords: Passwords, add: AddUser) -> None:
    await add("alice")
    reopened = await reopen()
    try:
        assert await UserStore(reopened.users, passwords, load_policy(None)).get("alice") is not None
    finally:
        await reopened.close()


async def test_set_role_changes_the_role(store: UserStore, add: AddUser) -> None:
    await add("alice")
    await store.set_role("alice", "admin")
    user = await store.get("alice")
    assert user is not None and user.role == "admin"


async def test_set_disabled_disables_and_enables(store: UserStore, add: AddUser) -> None:
    await add("alice")
    await store.set_disabled("alice", True)
    assert [user.disabled for user in await store.list()] == [True]
    await store.set_disabled("alice", False)
    assert [user.disabled for user in await store.list()] == [False]


async def test_set_password_replaces_the_password(store: UserStore, add: AddUser) -> None:
    await add("alice")
    await store.set_password("alice", "battery staple")
    assert (await store.verify_login("alice", "battery staple")).subject == "alice"
    with pytest.raises(NotAuthenticatedError):
        await store.verify_login("alice", PASSWORD)


async def test_remove_deletes_the_user(store: UserStore, add: AddUser) -> None:
    await add("alice")
    await add("bob")
    await store.remove("alice")
    assert await store.get("alice") is None
    assert [user.username for user in await store.list()] == ["bob"]


async def test_removed_name_can_be_added_again(store: UserStore, add: AddUser) -> None:
    await add("alice")
    await store.remove("alice")
    assert (await add("alice")).username == "alice"


@pytest.mark.parametrize(
    "change",
    [
        lambda store: store.set_role("nobody", "user"),
        lambda store: store.set_disabled("nobody", True),
        lambda store: store.set_password("nobody", "pw"),
        lambda store: store.remove("nobody"),
    ],
    ids=["set_role", "set_disabled", "set_password", "remove"],
)
async def test_changing_an_unknown_user_is_a_user_error(
    store: UserStore, change: Callable[[UserStore], Awaitable[None]]
) -> None:
    with pytest.raises(UserError, match=r"^no such user: 'nobody'$"):
        await change(store)


# --- refusals when adding -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"username": "alice"}, {"username": "alice"}),  # same username
        ({"username": "alice"}, {"username": "bob", "client_id": "alice"}),  # clientId = an existing username
        ({"username": "bob", "client_id": "alice"}, {"username": "alice"}),  # username = an existing clientId
        ({"username": "bob", "client_id": "shared"}, {"username": "carol", "client_id": "shared"}),  # same clientId
        ({"username": "alice", "client_id": "al"}, {"username": "al", "client_id": "other"}),  # username = clientId
    ],
    ids=["username", "client-id-is-username", "username-is-client-id", "client-id", "username-is-other-client-id"],
)
async def test_duplicate_username_or_client_id_is_refused(
    store: UserStore, add: AddUser, first: dict[str, str], second: dict[str, str]
) -> None:
    await add(first["username"], client_id=first.get("client_id"))
    with pytest.raises(UserError, match=r"^username or clientId already in use: "):
        await add(second["username"], client_id=second.get("client_id"))
    assert len(await store.list()) == 1


async def test_unknown_role_is_refused_listing_the_roles(store: UserStore, add: AddUser) -> None:
    with pytest.raises(UserError) as exc_info:
        await add("alice", role="boss")
    assert exc_info.value.message == "role 'boss' is not defined by the policy (roles: admin, demo, user)"
    assert await store.list() == []


async def test_set_role_to_an_unknown_role_is_refused(store: UserStore, add: AddUser) -> None:
    await add("alice")
    with pytest.raises(UserError, match="^role 'boss' is not defined by the policy"):
        await store.set_role("alice", "boss")
    user = await store.get("alice")
    assert user is not None and user.role == "user"


UNSAFE_NAMES = [
    ("*", 'username "*" is a wildcard and cannot be used as an identity'),
    ("a:b", 'username "a:b" contains characters outside the safe set (letters, digits, _ . @ + -)'),
    ("[x]", 'username "[x]" must start with an ASCII letter or digit'),
    ("", "username must not be empty"),
    ("x" * 65, "username is longer than 64 characters"),
    ("al ice", 'username "al ice" contains characters outside the safe set (letters, digits, _ . @ + -)'),
]


@pytest.mark.parametrize(("username", "message"), UNSAFE_NAMES)
async def test_unsafe_username_is_refused(store: UserStore, add: AddUser, username: str, message: str) -> None:
    with pytest.raises(UserError) as exc_info:
        await add(username)
    assert exc_info.value.message == message
    assert await store.list() == []


@pytest.mark.parametrize(
    ("client_id", "message"), [(name, m.replace("username", "clientId")) for name, m in UNSAFE_NAMES]
)
async def test_unsafe_client_id_is_refused(store: UserStore, add: AddUser, client_id: str, message: str) -> None:
    with pytest.raises(UserError) as exc_info:
        await add("alice", client_id=client_id)
    assert exc_info.value.message == message
    assert await store.list() == []


async def test_longest_safe_username_is_accepted(add: AddUser) -> None:
    assert (await add("x" * 64)).client_id == "x" * 64


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", "password is empty"),
        ("é" * (MAX_PASSWORD_LENGTH // 2 + 1), f"password is longer than {MAX_PASSWORD_LENGTH} bytes"),
    ],
)
async def test_bad_password_is_refused(store: UserStore, add: AddUser, password: str, message: str) -> None:
    with pytest.raises(UserError) as exc_info:
        await add("alice", password)
    assert exc_info.value.message == message
    await add("bob")
    with pytest.raises(UserError) as exc_info:
        await store.set_password("bob", password)
    assert exc_info.value.message == message


# --- verify_login ---------------------------------------------------------------------------------


async def test_right_password_gives_the_account_identity(store: UserStore, add: AddUser) -> None:
    await add("alice", role="admin", client_id="alice-1")
    assert await store.verify_login("alice", PASSWORD) == Identity(
        subject="alice", client_id="alice-1", role="admin", source="account"
    )


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice", "wrong"),
        ("alice", ""),
        ("nobody", PASSWORD),
        ("", PASSWORD),
        ("x" * 65, PASSWORD),
        ("alice", "x" * (MAX_PASSWORD_LENGTH + 1)),
        ("ALICE", PASSWORD),
    ],
)
async def test_wrong_password_and_unknown_user_are_indistinguishable(
    store: UserStore, add: AddUser, username: str, password: str
) -> None:
    await add("alice")
    with pytest.raises(NotAuthenticatedError) as exc_info:
        await store.verify_login(username, password)
    assert exc_info.value.message == BAD_CREDENTIALS == "invalid username or password"
    assert exc_info.value.status == 401


async def test_disabled_account_with_the_right_password_is_forbidden(store: UserStore, add: AddUser) -> None:
    await add("alice")
    await store.set_disabled("alice", True)
    with pytest.raises(ForbiddenError, match=r"^account is disabled$") as exc_info:
        await store.verify_login("alice", PASSWORD)
    assert exc_info.value.status == 403


async def test_disabled_account_with_a_wrong_password_does_not_reveal_it_is_disabled(
    store: UserStore, add: AddUser
) -> None:
    await add("alice")
    await store.set_disabled("alice", True)
    with pytest.raises(NotAuthenticatedError, match=f"^{BAD_CREDENTIALS}$"):
        await store.verify_login("alice", "wrong")


async def test_new_role_applies_to_the_next_login(store: UserStore, add: AddUser) -> None:
    await add("alice")
    await store.set_role("alice", "admin")
    assert (await store.verify_login("alice", PASSWORD)).role == "admin"


async def test_account_with_a_blank_password_hash_cannot_log_in(
    storage: Storage, store: UserStore, add: AddUser
) -> None:
    await add("alice")
    assert await storage.users.set_password_hash("alice", "", end_sessions=False)
    with pytest.raises(NotAuthenticatedError):
        await store.verify_login("alice", "dummy password for unknown users")


# --- demo_login -----------------------------------------------------------------------------------


async def test_demo_login_with_a_new_name_is_a_demo_identity_with_the_demo_role(store: UserStore) -> None:
    assert await store.demo_login("dora", "anything at all") == Identity(
        subject="dora", client_id="dora", role="demo", source="demo"
    )


async def test_demo_login_uses_the_policys_demo_role(storage: Storage, passwords: Passwords) -> None:
    policy: Policy = parse_policy(
        {
            "roles": {
                "member": {"capability": {"chat:*": ["*"]}},
                "guest": {"capability": {"chat:lobby": ["subscribe"]}},
            },
            "default_role": "member",
            "demo_role": "guest",
        }
    )
    assert (await UserStore(storage.users, passwords, policy).demo_login("dora", "")).role == "guest"


async def test_demo_login_stores_nothing(store: UserStore) -> None:
    await store.demo_login("dora", "pw")
    assert await store.list() == []


async def test_demo_login_as_an_existing_account_needs_its_password(store: UserStore, add: AddUser) -> None:
    await add("alice", role="admin")
    assert await store.demo_login("alice", PASSWORD) == Identity("alice", "alice", "admin", "account")
    with pytest.raises(NotAuthenticatedError) as exc_info:
        await store.demo_login("alice", "wrong")
    # Not "wrong username or password": the name is an account's, so demo login does not apply to it.
    assert exc_info.value.message == (
        "wrong password for 'alice': it is a registered account, so demo login (any password) does not"
        " apply to it; use its password or another name"
    )
    assert (exc_info.value.code, exc_info.value.status) == (40101, 401)


async def test_demo_login_as_a_disabled_account_is_forbidden(store: UserStore, add: AddUser) -> None:
    await add("alice")
    await store.set_disabled("alice", True)
    with pytest.raises(ForbiddenError):
        await store.demo_login("alice", PASSWORD)


async def test_demo_name_equal_to_an_accounts_client_id_is_refused(store: UserStore, add: AddUser) -> None:
    # "wonder" is free as a username but is alice's clientId: a demo login would impersonate her.
    await add("alice", client_id="wonder")
    with pytest.raises(NotAuthenticatedError) as exc_info:
        await store.demo_login("wonder", PASSWORD)
    assert exc_info.value.message.startswith("'wonder' belongs to a registered account, so demo login does not")


async def test_demo_identity_is_for_free_names_only(store: UserStore, add: AddUser) -> None:
    await add("alice", client_id="wonder")
    assert await store.demo_identity("dora") == Identity("dora", "dora", "demo", "demo")
    for taken in ("alice", "wonder"):
        with pytest.raises(NotAuthenticatedError, match="belongs to a registered account"):
            await store.demo_identity(taken)


async def test_accounts_whose_role_the_policy_no_longer_has_are_found(
    storage: Storage, store: UserStore, add: AddUser
) -> None:
    await add("alice", role="admin")
    await add("bob")
    narrower = UserStore(
        storage.users, store.passwords, parse_policy({"roles": {"user": {"capability": {"chat:*": ["subscribe"]}}}})
    )
    assert [user.username for user in await narrower.outside_policy()] == ["alice"]
    assert await store.outside_policy() == []


@pytest.mark.parametrize("name", ["*", "a:b", "[x]", "", "x" * 65, "private:{clientId}"])
async def test_unsafe_demo_name_is_a_client_id_error(store: UserStore, name: str) -> None:
    with pytest.raises(ClientIdError) as exc_info:
        await store.demo_login(name, "pw")
    assert (exc_info.value.code, exc_info.value.status) == (40012, 400)


async def test_a_login_upgrades_a_hash_made_with_older_parameters(storage: Storage) -> None:
    old = UserStore(storage.users, Passwords(time_cost=1, memory_cost=8192, parallelism=1), load_policy(None))
    await old.add("alice", "correct horse", role=None, client_id=None, now=0.0)
    before = await old.get("alice")
    new = UserStore(storage.users, Passwords(time_cost=2, memory_cost=8192, parallelism=1), load_policy(None))
    await new.verify_login("alice", "correct horse")
    after = await new.get("alice")
    assert before is not None and after is not None
    assert after.password_hash != before.password_hash and "t=2" in after.password_hash
    await new.verify_login("alice", "correct horse")  # the upgraded hash still verifies
