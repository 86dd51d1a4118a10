"""Accounts: username, password hash (argon2id), role, clientId (defaults to the username), disabled."""

from __future__ import annotations

import builtins

import anyio.to_thread

from authserver.core.callers import ACCOUNT, DEMO, Identity
from authserver.core.clientids import check_client_id, is_safe_client_id
from authserver.core.policy import Policy
from authserver.errors import (
    AlreadyExistsError,
    ClientIdError,
    ForbiddenError,
    NotAuthenticatedError,
    NotFoundError,
    UserError,
)
from authserver.identity.passwords import MAX_PASSWORD_LENGTH, PasswordRules, Passwords
from authserver.infra.changes import LocalChanges, SessionChanges
from authserver.revocation.targets import RevocationQueue, user_target
from authserver.storage import QueuedRevocations, UserRecord, UserStorage

BAD_CREDENTIALS = "invalid username or password"

#: An account as stored (the storage layer's record).
User = UserRecord


def account_identity(user: User) -> Identity:
    """The identity an account's tokens carry (the one place an :class:`Identity` is built from an account).

    :raises ForbiddenError: the account is disabled (a final refusal: Ably clients stop retrying).
    """
    refuse_disabled(user)
    return Identity(subject=user.username, client_id=user.client_id, role=user.role, source=ACCOUNT)


def refuse_disabled(user: User) -> None:
    """The one place that decides what a disabled account gets. :raises ForbiddenError: when disabled."""
    if user.disabled:
        raise ForbiddenError("account is disabled")


def check_username(username: str) -> str:
    """Usernames follow the clientId safe set, since the clientId defaults to the username.

    :raises UserError: naming the rule that is broken.
    """
    try:
        return check_client_id(username)
    except ClientIdError as exc:
        raise UserError(exc.message.replace("clientId", "username")) from None


class UserStore:
    """Accounts: validation, password hashing and the login checks, over a :class:`UserStorage`.

    Every change that can end or alter a session is announced on ``changes`` once it is stored.
    """

    def __init__(
        self,
        storage: UserStorage,
        passwords: Passwords,
        policy: Policy,
        changes: SessionChanges | None = None,
        revoke: RevocationQueue | None = None,
        rules: PasswordRules | None = None,
    ) -> None:
        self.storage = storage
        self.passwords = passwords
        self.policy = policy
        #: What a password given here must be (NIST SP 800-63B).
        self.rules = rules or PasswordRules()
        self.changes: SessionChanges = changes or LocalChanges()
        #: Takes back the account's live tokens after a change (None: revocation is off).
        self.revoke = revoke

    def _revocations(self, user: User | None, reason: str, *, reauth: bool = False) -> QueuedRevocations | None:
        """The revocation of every token of ``user``'s clientId issued until now (all devices)."""
        if self.revoke is None or user is None:
            return None
        return self.revoke.queue([user_target(user.client_id)], reason=reason, reauth=reauth)

    async def get(self, username: str) -> User | None:
        return await self.storage.get(username)

    async def by_client_id(self, client_id: str) -> User | None:
        return await self.storage.by_client_id(client_id)

    async def list(self) -> list[User]:
        return await self.storage.all()

    def _check_role(self, role: str) -> str:
        if role not in self.policy.roles:
            raise UserError(
                f"role {role!r} is not defined by the policy (roles: {', '.join(sorted(self.policy.roles))})"
            )
        return role

    async def _hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self.passwords.hash, password)

    async def add(self, username: str, password: str, *, role: str | None, client_id: str | None, now: float) -> User:
        """:raises UserError: for an invalid or duplicate username/clientId, an unknown role, a bad password."""
        username = check_username(username)
        try:
            client_id = check_client_id(client_id if client_id is not None else username)
        except ClientIdError as exc:
            raise UserError(exc.message) from None
        role = self._check_role(role or self.policy.default_role)
        password = self.rules.check(password, names=(username, client_id))
        user = User(username, client_id, role, False, await self._hash(password))
        if not await self.storage.insert(user, created=now):
            raise AlreadyExistsError(f"username or clientId already in use: {username!r} / {client_id!r}")
        await self.changes.announce()  # a demo session of this name ends now
        return user

    async def _changed(self, changed: bool, username: str, revocations: QueuedRevocations | None = None) -> None:
        """After a change (stored with its ``revocations``): announce it, then deliver them."""
        if not changed:
            raise NotFoundError(f"no such user: {username!r}")
        await self.changes.announce()
        if revocations is not None and self.revoke is not None:
            await self.revoke.queued(revocations)

    async def set_role(self, username: str, role: str) -> None:
        """A new role applies to the next token; the live ones are revoked with ``allowReauthMargin``:
        Ably asks each connection to renew (AUTH) and the client fetches a token with the new capability."""
        user = await self.get(username)
        role = self._check_role(role)
        revoke = self._revocations(user, "role", reauth=True) if user is not None and user.role != role else None
        await self._changed(await self.storage.set_role(username, role, revoke=revoke), username, revoke)

    async def set_disabled(self, username: str, disabled: bool) -> None:
        # NOTE: sessions are kept on purpose: a disabled account's session gets 403, which tells Ably
        # clients to stop retrying, and tells the page why.
        user = await self.get(username)
        revoke = self._revocations(user, "disabled") if disabled else None
        await self._changed(await self.storage.set_disabled(username, disabled, revoke=revoke), username, revoke)

    async def set_password(self, username: str, password: str) -> None:
        """A new password ends every session of the account and revokes its tokens."""
        user = await self.get(username)
        if user is None:
            raise NotFoundError(f"no such user: {username!r}")
        password_hash = await self._hash(self.rules.check(password, names=(username, user.client_id)))
        revoke = self._revocations(user, "password")
        changed = await self.storage.set_password_hash(username, password_hash, end_sessions=True, revoke=revoke)
        await self._changed(changed, username, revoke)

    async def remove(self, username: str) -> None:
        user = await self.get(username)
        revoke = self._revocations(user, "removed")
        await self._changed(await self.storage.delete(username, revoke=revoke), username, revoke)

    async def verify_login(self, username: str, password: str) -> Identity:
        """Check a username and password: one uniform 401 for every wrong combination.

        :raises NotAuthenticatedError: unknown user or wrong password (indistinguishable, constant work).
        :raises ForbiddenError: the right password for a disabled account.
        """
        # Names outside the safe set cannot be accounts: no database lookup, the same work and answer.
        user = await self.get(username) if is_safe_client_id(username) else None
        too_long = len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_LENGTH
        ok = await anyio.to_thread.run_sync(
            self.passwords.verify,
            None if user is None or too_long else user.password_hash,
            "" if too_long else password,
        )
        if user is None or not ok:
            raise NotAuthenticatedError(BAD_CREDENTIALS)
        identity = account_identity(user)
        if self.passwords.needs_rehash(user.password_hash):
            # The hashing parameters changed since this password was stored: upgrade it now.
            await self.storage.set_password_hash(username, await self._hash(password), end_sessions=False)
        return identity

    async def outside_policy(self) -> builtins.list[User]:
        """Accounts whose role the policy does not define: their logins work, their tokens are refused."""
        return [user for user in await self.list() if user.role not in self.policy.roles]

    async def demo_identity(self, username: str) -> Identity:
        """The identity demo login gives ``username``, which must not be an account's name or clientId.

        :raises ClientIdError: the name is not a safe clientId.
        :raises NotAuthenticatedError: the name belongs to an account.
        """
        client_id = check_client_id(username)
        if await self.get(username) is not None or await self.by_client_id(client_id) is not None:
            raise NotAuthenticatedError(_registered(username))
        return Identity(subject=client_id, client_id=client_id, role=self.policy.demo_role, source=DEMO)

    async def demo_login(self, username: str, password: str) -> Identity:
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
        if await self.get(username) is not None:
            try:
                return await self.verify_login(username, password)
            except NotAuthenticatedError:
                raise NotAuthenticatedError(
                    f"wrong password for {username!r}: it is a registered account, so demo login"
                    " (any password) does not apply to it; use its password or another name"
                ) from None
        return await self.demo_identity(client_id)


def outside_policy_problem(outside: list[User], policy_source: str) -> str:
    """What to say about accounts whose role the policy (from ``policy_source``) does not define."""
    names = ", ".join(f"{user.username} (role {user.role!r})" for user in outside)
    return (
        f"AUTHSERVER_POLICY: {len(outside)} account(s) have a role the policy ({policy_source}) does not"
        f" define, so their tokens are refused: {names}; give them a defined role with"
        " `authserver users set-role NAME ROLE`, or add the role to the policy"
    )


def _registered(name: str) -> str:
    return (
        f"{name!r} belongs to a registered account, so demo login does not apply to it;"
        " log in with the account's username and password, or pick another name"
    )
