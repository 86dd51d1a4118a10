"""Accounts: username, password hash (argon2id), role, clientId (defaults to the username), disabled."""

from __future__ import annotations

import builtins
import sqlite3
from dataclasses import dataclass, field

from ..clientids import check_client_id, is_safe_client_id
from ..database import Database
from ..errors import ClientIdError, ForbiddenError, NotAuthenticatedError, UserError
from ..policy import Policy
from . import Identity
from .passwords import MAX_PASSWORD_LENGTH, Passwords

BAD_CREDENTIALS = "invalid username or password"


@dataclass(frozen=True, slots=True)
class User:
    username: str
    client_id: str
    role: str
    disabled: bool
    password_hash: str = field(repr=False)


def check_username(username: str) -> str:
    """Usernames follow the clientId safe set, since the clientId defaults to the username.

    :raises UserError: naming the rule that is broken.
    """
    try:
        return check_client_id(username)
    except ClientIdError as exc:
        raise UserError(exc.message.replace("clientId", "username")) from None


def check_password(password: str) -> str:
    if not password:
        raise UserError("password is empty")
    if len(password.encode("utf-8")) > MAX_PASSWORD_LENGTH:
        raise UserError(f"password is longer than {MAX_PASSWORD_LENGTH} bytes")
    return password


class UserStore:
    def __init__(self, db: Database, passwords: Passwords, policy: Policy) -> None:
        self.db = db
        self.passwords = passwords
        self.policy = policy

    def _row(self, where: str, value: str) -> User | None:
        row = self.db.query_one(
            f"SELECT username, client_id, role, disabled, password_hash FROM users WHERE {where} = ?",  # noqa: S608
            (value,),
        )
        return None if row is None else User(row[0], row[1], row[2], bool(row[3]), row[4])

    def get(self, username: str) -> User | None:
        return self._row("username", username)

    def by_client_id(self, client_id: str) -> User | None:
        return self._row("client_id", client_id)

    def list(self) -> list[User]:
        rows = self.db.query("SELECT username, client_id, role, disabled, password_hash FROM users ORDER BY username")
        return [User(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]

    def _check_role(self, role: str) -> str:
        if role not in self.policy.roles:
            raise UserError(
                f"role {role!r} is not defined by the policy (roles: {', '.join(sorted(self.policy.roles))})"
            )
        return role

    def add(self, username: str, password: str, *, role: str | None, client_id: str | None, now: float) -> User:
        """:raises UserError: for an invalid or duplicate username/clientId, an unknown role, a bad password."""
        username = check_username(username)
        try:
            client_id = check_client_id(client_id if client_id is not None else username)
        except ClientIdError as exc:
            raise UserError(exc.message) from None
        role = self._check_role(role or self.policy.default_role)
        password_hash = self.passwords.hash(check_password(password))
        try:
            with self.db.transaction() as conn:
                taken = conn.execute(
                    "SELECT 1 FROM users WHERE username = ? OR client_id = ? OR username = ? OR client_id = ?",
                    (username, username, client_id, client_id),
                ).fetchone()
                if taken:
                    raise UserError(f"username or clientId already in use: {username!r} / {client_id!r}")
                conn.execute(
                    "INSERT INTO users (username, client_id, role, password_hash, disabled, created)"
                    " VALUES (?, ?, ?, ?, 0, ?)",
                    (username, client_id, role, password_hash, now),
                )
        except sqlite3.IntegrityError:
            raise UserError(f"username or clientId already in use: {username!r} / {client_id!r}") from None
        return User(username, client_id, role, False, password_hash)

    def _require(self, changed: int, username: str) -> None:
        if not changed:
            raise UserError(f"no such user: {username!r}")

    def set_role(self, username: str, role: str) -> None:
        self._require(
            self.db.execute("UPDATE users SET role = ? WHERE username = ?", (self._check_role(role), username)),
            username,
        )

    def _update_ending_sessions(self, sql: str, params: tuple[object, ...], username: str) -> None:
        """An account change after which no existing session of the account may go on."""
        with self.db.transaction() as conn:
            changed = conn.execute(sql, params).rowcount
            conn.execute("DELETE FROM sessions WHERE username = ? AND source = 'account'", (username,))
        self._require(changed, username)

    def set_disabled(self, username: str, disabled: bool) -> None:
        # NOTE: sessions are kept on purpose: a disabled account's session gets 403, which tells Ably
        # clients to stop retrying; a deleted session would get 401 and be retried for ever.
        self._require(
            self.db.execute("UPDATE users SET disabled = ? WHERE username = ?", (int(disabled), username)), username
        )

    def set_password(self, username: str, password: str) -> None:
        password_hash = self.passwords.hash(check_password(password))
        sql = "UPDATE users SET password_hash = ? WHERE username = ?"
        self._update_ending_sessions(sql, (password_hash, username), username)

    def remove(self, username: str) -> None:
        with self.db.transaction() as conn:
            changed = conn.execute("DELETE FROM users WHERE username = ?", (username,)).rowcount
            conn.execute("DELETE FROM sessions WHERE username = ? AND source = 'account'", (username,))
        self._require(changed, username)

    def verify_login(self, username: str, password: str) -> Identity:
        """Check a username and password: one uniform 401 for every wrong combination.

        :raises NotAuthenticatedError: unknown user or wrong password (indistinguishable, constant work).
        :raises ForbiddenError: the right password for a disabled account.
        """
        # Names outside the safe set cannot be accounts: no database lookup, the same work and answer.
        user = self.get(username) if is_safe_client_id(username) else None
        too_long = len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_LENGTH
        ok = self.passwords.verify(
            None if user is None or too_long else user.password_hash, "" if too_long else password
        )
        if user is None or not ok:
            raise NotAuthenticatedError(BAD_CREDENTIALS)
        if user.disabled:
            raise ForbiddenError("account is disabled")
        if self.passwords.needs_rehash(user.password_hash):
            # The hashing parameters changed since this password was stored: upgrade it now.
            self.db.execute(
                "UPDATE users SET password_hash = ? WHERE username = ?", (self.passwords.hash(password), username)
            )
        return Identity(subject=user.username, client_id=user.client_id, role=user.role, source="account")

    def outside_policy(self) -> builtins.list[User]:
        """Accounts whose role the policy does not define: their logins work, their tokens are refused."""
        return [user for user in self.list() if user.role not in self.policy.roles]

    def demo_identity(self, username: str) -> Identity:
        """The identity demo login gives ``username``, which must not be an account's name or clientId.

        :raises ClientIdError: the name is not a safe clientId.
        :raises NotAuthenticatedError: the name belongs to an account.
        """
        client_id = check_client_id(username)
        if self.get(username) is not None or self.by_client_id(client_id) is not None:
            raise NotAuthenticatedError(_registered(username))
        return Identity(subject=client_id, client_id=client_id, role=self.policy.demo_role, source="demo")

    def demo_login(self, username: str, password: str) -> Identity:
        """Demo mode: any name logs in, but never as an existing account without its password.

        A name that is an account's username logs in with that account's password only; one that is
        an account's clientId not at all. Both refusals say why (demo login does not apply to an
        account's name) rather than "wrong username or password": in demo mode anybody can tell
        account names from free ones anyway (only free names log in with any password), so the
        message gives nothing away. The refusal is still a failed login for the throttle.

        :raises ClientIdError: the name is not a safe clientId.
        :raises NotAuthenticatedError: an account's name with a wrong password, or an account's clientId.
        :raises ForbiddenError: an account's name and password, the account disabled.
        """
        client_id = check_client_id(username)
        if self.get(username) is not None:
            try:
                return self.verify_login(username, password)
            except NotAuthenticatedError:
                raise NotAuthenticatedError(
                    f"wrong password for {username!r}: it is a registered account, so demo login"
                    " (any password) does not apply to it; use its password or another name"
                ) from None
        return self.demo_identity(client_id)


def _registered(name: str) -> str:
    return (
        f"{name!r} belongs to a registered account, so demo login does not apply to it;"
        " log in with the account's username and password, or pick another name"
    )
