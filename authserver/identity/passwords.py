"""Password hashing with argon2id (argon2-cffi), in self-describing PHC strings; and the rules a new
password must pass (NIST SP 800-63B)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from authserver.errors import UserError

MAX_PASSWORD_LENGTH = 1024  # bytes of work per login are bounded; longer inputs are refused
#: NIST SP 800-63B: a verifier shall require at least 8 characters.
MIN_PASSWORD_LENGTH = 8


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords of zxcvbn's list (lower case), loaded on first use (by the
    command line, and by the service at the admin API's first password)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


@dataclass(frozen=True, slots=True)
class PasswordRules:
    """What a new password must be (NIST SP 800-63B): at least ``min_length`` characters (each Unicode
    code point counts as one), at most :data:`MAX_PASSWORD_LENGTH` bytes, not a common password, not
    the account's own name, not one character repeated. No composition rules (SP 800-63B forbids them):
    a long passphrase of lower-case words is welcome."""

    min_length: int = MIN_PASSWORD_LENGTH

    def check(self, password: str, *, names: tuple[str, ...] = ()) -> str:
        """``password`` when it passes; ``names``: the account's username and clientId.

        :raises UserError: saying which rule it breaks (never quoting the password).
        """
        if not password:
            raise UserError("password is empty")
        if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_LENGTH:
            raise UserError(f"password is longer than {MAX_PASSWORD_LENGTH} bytes")
        if len(password) < self.min_length:
            raise UserError(
                f"password is shorter than {self.min_length} characters (AUTHSERVER_PASSWORD_MIN_LENGTH);"
                " a few words make a long one that is easy to remember"
            )
        folded = password.casefold()
        if folded in common_passwords():
            raise UserError("password is one of the most common passwords: choose another")
        if any(folded == name.casefold() for name in names):
            raise UserError("password is the account's own name: choose another")
        if len(set(password)) == 1:
            raise UserError("password is one character repeated: choose another")
        return password


class Passwords:
    """Hash and verify passwords. ``verify`` takes the same time whether or not the user exists."""

    def __init__(self, *, time_cost: int = 3, memory_cost: int = 65536, parallelism: int = 2) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID
        )
        # A hash of nothing in particular, verified when the user is unknown so that timing does not
        # reveal which usernames exist.
        self._dummy_hash = self._hasher.hash("dummy password for unknown users")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            ok = self._hasher.verify(password_hash or self._dummy_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return ok and bool(password_hash)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
