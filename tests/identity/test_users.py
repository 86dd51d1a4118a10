"""Accounts in a real SQLite database: administration, password logins and demo logins."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from authserver.database import Database
from authserver.errors import ClientIdError, ForbiddenError, NotAuthenticatedError, UserError
from authserver.identity import Identity
from authserver.identity.passwords import MAX_PASSWORD_LENGTH, Passwords
from authserver.identity.users import BAD_CREDENTIALS, User, UserStore
from authserver.policy import Policy, load_policy, parse_policy

NOW = 1_700_000_000.0
PASSWORD = "correct horse"


class AddUser(Protocol):
    def __call__(
        self, username: str, password: str = ..., *, role: str | None = ..., client_id: str | None = ...
    ) -> User: ...


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords(time_cost=1, memory_cost=8192, parallelism=1)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(str(tmp_path / "users.db"))
    yield database
    database.close()


@pytest.fixture
def store(db: Database, passwords: Passwords) -> UserStore:
    return UserStore(db, passwords, load_policy(None))


@pytest.fixture
def add(store: UserStore) -> AddUser:
    """``store.add`` with a fixed clock, the test password and policy defaults."""

    def add_user(
        username: str, password: str = PASSWORD, *, role: str | None = None, client_id: str | None = None
    ) -> User:
        return store.add(username, password, role=role, client_id=client_id, now=NOW)

    return add_user


# --- administration -------------------------------------------------------------------------------


def test_added_user_gets_the_default_role_and_their_name_as_client_id(store: UserStore, add: AddUser) -> None:
    user = add("alice")
    assert (user.username, user.client_id, user.role, user.disabled) == ("alice", "alice", "user", False)
    assert store.get("alice") == user
    assert store.by_client_id("alice") == user


def test_added_user_may_have_a_role_and_a_client_id(store: UserStore, add: AddUser) -> None:
    add("bob", role="admin", client_id="bob@example.com")
    user = store.get("bob")
    assert user is not None
    assert (user.client_id, user.role) == ("bob@example.com", "admin")
    assert store.by_client_id("bob@example.com") == user
    assert store.by_client_id("bob") is None


def test_password_is_stored_only_as_an_argon2id_hash(db: Database, add: AddUser) -> None:
    add("alice")
    rows = db.query("SELECT * FROM users")
    assert len(rows) == 1
    assert not any(PASSWORD in str(value) for value in rows[0])
    assert any(str(value).startswith("$argon2id$") for value in rows[0])


def test_repr_of_a_user_hides_the_password_hash(add: AddUser) -> None:
    user = add("alice")
    assert "$argon2id$" not in repr(user)
    assert user.password_hash not in repr(user)


def test_unknown_user_is_none(store: UserStore) -> None:
    assert store.get("nobody") is None
    assert store.by_client_id("nobody") is None


def test_list_is_every_user_sorted_by_username(store: UserStore, add: AddUser) -> None:
    assert store.list() == []
    for name in ("carol", "alice", "bob"):
        add(name)
    assert [user.username for user in store.list()] == ["alice", "bob", "carol"]


def test_users_persist_in_the_database_file(tmp_path: Path, passwords: Passwords, add: AddUser) -> None:
    add("alice")
    reopened = Database(str(tmp_path / "users.db"))
    try:
        assert UserStore(reopened, passwords, load_policy(None)).get("alice") is not None
    finally:
        reopened.close()


def test_set_role_changes_the_role(store: UserStore, add: AddUser) -> None:
    add("alice")
    store.set_role("alice", "admin")
    user = store.get("alice")
    assert user is not None and user.role == "admin"


def test_set_disabled_disables_and_enables(store: UserStore, add: AddUser) -> None:
    add("alice")
    store.set_disabled("alice", True)
    assert [user.disabled for user in store.list()] == [True]
    store.set_disabled("alice", False)
    assert [user.disabled for user in store.list()] == [False]


def test_set_password_replaces_the_password(store: UserStore, add: AddUser) -> None:
    add("alice")
    store.set_password("alice", "battery staple")
    assert store.verify_login("alice", "battery staple").subject == "alice"
    with pytest.raises(NotAuthenticatedError):
        store.verify_login("alice", PASSWORD)


def test_remove_deletes_the_user(store: UserStore, add: AddUser) -> None:
    add("alice")
    add("bob")
    store.remove("alice")
    assert store.get("alice") is None
    assert [user.username for user in store.list()] == ["bob"]


def test_removed_name_can_be_added_again(store: UserStore, add: AddUser) -> None:
    add("alice")
    store.remove("alice")
    assert add("alice").username == "alice"


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
def test_changing_an_unknown_user_is_a_user_error(store: UserStore, change: Callable[[UserStore], None]) -> None:
    with pytest.raises(UserError, match=r"^no such user: 'nobody'$"):
        change(store)


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
def test_duplicate_username_or_client_id_is_refused(
    store: UserStore, add: AddUser, first: dict[str, str], second: dict[str, str]
) -> None:
    add(first["username"], client_id=first.get("client_id"))
    with pytest.raises(UserError, match=r"^username or clientId already in use: "):
        add(second["username"], client_id=second.get("client_id"))
    assert len(store.list()) == 1


def test_unknown_role_is_refused_listing_the_roles(store: UserStore, add: AddUser) -> None:
    with pytest.raises(UserError) as exc_info:
        add("alice", role="boss")
    assert exc_info.value.message == "role 'boss' is not defined by the policy (roles: admin, demo, user)"
    assert store.list() == []


def test_set_role_to_an_unknown_role_is_refused(store: UserStore, add: AddUser) -> None:
    add("alice")
    with pytest.raises(UserError, match="^role 'boss' is not defined by the policy"):
        store.set_role("alice", "boss")
    user = store.get("alice")
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
def test_unsafe_username_is_refused(store: UserStore, add: AddUser, username: str, message: str) -> None:
    with pytest.raises(UserError) as exc_info:
        add(username)
    assert exc_info.value.message == message
    assert store.list() == []


@pytest.mark.parametrize(
    ("client_id", "message"), [(name, m.replace("username", "clientId")) for name, m in UNSAFE_NAMES]
)
def test_unsafe_client_id_is_refused(store: UserStore, add: AddUser, client_id: str, message: str) -> None:
    with pytest.raises(UserError) as exc_info:
        add("alice", client_id=client_id)
    assert exc_info.value.message == message
    assert store.list() == []


def test_longest_safe_username_is_accepted(add: AddUser) -> None:
    assert add("x" * 64).client_id == "x" * 64


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", "password is empty"),
        ("é" * (MAX_PASSWORD_LENGTH // 2 + 1), f"password is longer than {MAX_PASSWORD_LENGTH} bytes"),
    ],
)
def test_bad_password_is_refused(store: UserStore, add: AddUser, password: str, message: str) -> None:
    with pytest.raises(UserError) as exc_info:
        add("alice", password)
    assert exc_info.value.message == message
    add("bob")
    with pytest.raises(UserError) as exc_info:
        store.set_password("bob", password)
    assert exc_info.value.message == message


# --- verify_login ---------------------------------------------------------------------------------


def test_right_password_gives_the_account_identity(store: UserStore, add: AddUser) -> None:
    add("alice", role="admin", client_id="alice-1")
    assert store.verify_login("alice", PASSWORD) == Identity(
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
def test_wrong_password_and_unknown_user_are_indistinguishable(
    store: UserStore, add: AddUser, username: str, password: str
) -> None:
    add("alice")
    with pytest.raises(NotAuthenticatedError) as exc_info:
        store.verify_login(username, password)
    assert exc_info.value.message == BAD_CREDENTIALS == "invalid username or password"
    assert exc_info.value.status == 401


def test_disabled_account_with_the_right_password_is_forbidden(store: UserStore, add: AddUser) -> None:
    add("alice")
    store.set_disabled("alice", True)
    with pytest.raises(ForbiddenError, match=r"^account is disabled$") as exc_info:
        store.verify_login("alice", PASSWORD)
    assert exc_info.value.status == 403


def test_disabled_account_with_a_wrong_password_does_not_reveal_it_is_disabled(store: UserStore, add: AddUser) -> None:
    add("alice")
    store.set_disabled("alice", True)
    with pytest.raises(NotAuthenticatedError, match=f"^{BAD_CREDENTIALS}$"):
        store.verify_login("alice", "wrong")


def test_new_role_applies_to_the_next_login(store: UserStore, add: AddUser) -> None:
    add("alice")
    store.set_role("alice", "admin")
    assert store.verify_login("alice", PASSWORD).role == "admin"


def test_account_with_a_blank_password_hash_cannot_log_in(db: Database, store: UserStore, add: AddUser) -> None:
    add("alice")
    db.execute("UPDATE users SET password_hash = '' WHERE username = 'alice'")
    with pytest.raises(NotAuthenticatedError):
        store.verify_login("alice", "dummy password for unknown users")


# --- demo_login -----------------------------------------------------------------------------------


def test_demo_login_with_a_new_name_is_a_demo_identity_with_the_demo_role(store: UserStore) -> None:
    assert store.demo_login("dora", "anything at all") == Identity(
        subject="dora", client_id="dora", role="demo", source="demo"
    )


def test_demo_login_uses_the_policys_demo_role(db: Database, passwords: Passwords) -> None:
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
    assert UserStore(db, passwords, policy).demo_login("dora", "").role == "guest"


def test_demo_login_stores_nothing(store: UserStore) -> None:
    store.demo_login("dora", "pw")
    assert store.list() == []


def test_demo_login_as_an_existing_account_needs_its_password(store: UserStore, add: AddUser) -> None:
    add("alice", role="admin")
    assert store.demo_login("alice", PASSWORD) == Identity("alice", "alice", "admin", "account")
    with pytest.raises(NotAuthenticatedError) as exc_info:
        store.demo_login("alice", "wrong")
    # Not "wrong username or password": the name is an account's, so demo login does not apply to it.
    assert exc_info.value.message == (
        "wrong password for 'alice': it is a registered account, so demo login (any password) does not"
        " apply to it; use its password or another name"
    )
    assert (exc_info.value.code, exc_info.value.status) == (40101, 401)


def test_demo_login_as_a_disabled_account_is_forbidden(store: UserStore, add: AddUser) -> None:
    add("alice")
    store.set_disabled("alice", True)
    with pytest.raises(ForbiddenError):
        store.demo_login("alice", PASSWORD)


def test_demo_name_equal_to_an_accounts_client_id_is_refused(store: UserStore, add: AddUser) -> None:
    # "wonder" is free as a username but is alice's clientId: a demo login would impersonate her.
    add("alice", client_id="wonder")
    with pytest.raises(NotAuthenticatedError) as exc_info:
        store.demo_login("wonder", PASSWORD)
    assert exc_info.value.message.startswith("'wonder' belongs to a registered account, so demo login does not")


def test_demo_identity_is_for_free_names_only(store: UserStore, add: AddUser) -> None:
    add("alice", client_id="wonder")
    assert store.demo_identity("dora") == Identity("dora", "dora", "demo", "demo")
    for taken in ("alice", "wonder"):
        with pytest.raises(NotAuthenticatedError, match="belongs to a registered account"):
            store.demo_identity(taken)


def test_accounts_whose_role_the_policy_no_longer_has_are_found(db: Database, store: UserStore, add: AddUser) -> None:
    add("alice", role="admin")
    add("bob")
    narrower = UserStore(
        db, store.passwords, parse_policy({"roles": {"user": {"capability": {"chat:*": ["subscribe"]}}}})
    )
    assert [user.username for user in narrower.outside_policy()] == ["alice"]
    assert store.outside_policy() == []


@pytest.mark.parametrize("name", ["*", "a:b", "[x]", "", "x" * 65, "private:{clientId}"])
def test_unsafe_demo_name_is_a_client_id_error(store: UserStore, name: str) -> None:
    with pytest.raises(ClientIdError) as exc_info:
        store.demo_login(name, "pw")
    assert (exc_info.value.code, exc_info.value.status) == (40012, 400)


def test_a_login_upgrades_a_hash_made_with_older_parameters(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "rehash.db"))
    old = UserStore(db, Passwords(time_cost=1, memory_cost=8192, parallelism=1), load_policy(None))
    old.add("alice", "correct horse", role=None, client_id=None, now=0.0)
    before = old.get("alice")
    new = UserStore(db, Passwords(time_cost=2, memory_cost=8192, parallelism=1), load_policy(None))
    new.verify_login("alice", "correct horse")
    after = new.get("alice")
    assert before is not None and after is not None
    assert after.password_hash != before.password_hash and "t=2" in after.password_hash
    new.verify_login("alice", "correct horse")  # the upgraded hash still verifies
    db.close()
