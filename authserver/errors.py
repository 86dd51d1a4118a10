"""The one exception tree of authserver.

Every error carries an Ably error ``code`` and an HTTP ``status`` so the HTTP layer, the sandbox
and the CLI can each render it in one place::

    AuthServerError                 root: never raised directly
    ├── ConfigError                 settings missing or invalid (lists every problem at once)
    ├── KeyFormatError              an Ably API key that does not parse
    ├── BadRequestError             malformed input from a client (400)
    │   ├── CapabilityError         capability JSON that Ably would refuse (400, 40000)
    │   └── ClientIdError           a clientId outside the safe set (400, 40012)
    ├── NotAuthenticatedError       no valid identity yet: clients retry (401, 40101)
    ├── ForbiddenError              a final refusal: clients stop retrying (403, 40300)
    │   └── SessionEndedError       a session ended by an action elsewhere (403, 40301-40305, per reason)
    ├── UserError                   account administration failed (400)
    │   ├── NotFoundError           nothing of that name: no such account or key (404, 40400)
    │   └── AlreadyExistsError      the name is taken (409, 40900)
    ├── DatabaseError               the accounts database cannot be opened
    ├── ListenError                 a server cannot listen on its address (the port is busy, no permission)
    ├── RateLimitedError            too many attempts: try again later (429, 42910)
    ├── UnavailableError            a dependency (the database) is busy or down: retry (503, 50300)
    │   ├── OverloadedError         more requests in flight than the process admits: retry (503, 50300)
    │   └── StoreUnavailableError   the accounts database did not answer (503, 50300)
    └── TokenError                  a token judged invalid (401, 4014x and friends)

Messages are short, name the field at fault and never contain a secret, password or token.
"""

from __future__ import annotations

from typing import Any

#: Where an Ably error code is explained (the ``href`` of every ErrorInfo).
HELP_URL = "https://help.ably.io/error/"


def error_info(code: int, status: int, message: str) -> dict[str, Any]:
    """Ably's ErrorInfo, for an HTTP body or a protocol frame: ``message``, ``code``, ``statusCode``, ``href``."""
    return {"message": message, "code": code, "statusCode": status, "href": f"{HELP_URL}{code}"}


class AuthServerError(Exception):
    """Base for every error authserver defines."""

    #: Ably error code (https://ably.com/docs/platform/errors/codes).
    code: int = 50000
    #: HTTP status that goes with the code.
    status: int = 500
    #: Seconds a client should wait before trying again (a ``Retry-After`` header), when it should.
    retry_after: int | None = None

    def __init__(self, message: str, *, code: int | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code}, status={self.status})"


class ConfigError(AuthServerError):
    """The configuration is incomplete or invalid; ``problems`` lists every finding."""

    code = 50000
    status = 500

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in self.problems))


class KeyFormatError(AuthServerError):
    """An Ably API key that is not ``appId.keyId:secret``."""

    code = 40101
    status = 401


class BadRequestError(AuthServerError):
    """The client sent something malformed; retrying the same request will not help."""

    code = 40000
    status = 400


class CapabilityError(BadRequestError):
    """A capability that is not valid Ably capability JSON."""


class ClientIdError(BadRequestError):
    """A clientId that is empty, a wildcard, or outside the documented safe set."""

    code = 40012


class NotAuthenticatedError(AuthServerError):
    """No valid identity (yet): Ably clients treat 401 as retryable."""

    code = 40101
    status = 401


class ForbiddenError(AuthServerError):
    """A final refusal: Ably clients move to FAILED on 403 and stop retrying."""

    code = 40300
    status = 403


class SessionEndedError(ForbiddenError):
    """A session that an action elsewhere ended (log out everywhere, a password change, the account
    removed): final for the cookie that named it, so 403, and a code per reason so a page can say what
    happened in plain words."""


class LoggedOutElsewhereError(SessionEndedError):
    """ "Log out everywhere" on another device ended this session."""

    code = 40301


class PasswordChangedError(SessionEndedError):
    """The account's password was changed, which ends its sessions."""

    code = 40302


class AccountRemovedError(SessionEndedError):
    """The account was removed."""

    code = 40303


class LoggedOutError(SessionEndedError):
    """This very session was logged out (in another window holding the same cookie)."""

    code = 40304


class ProviderLogoutError(SessionEndedError):
    """The identity provider logged the user out (OpenID Connect back-channel logout): the session it
    ended, and every upstream token of that user (or provider session) issued before the logout."""

    code = 40305


class UserError(AuthServerError):
    """Account administration failed: duplicate or unknown user, bad password input."""

    code = 40000
    status = 400


class NotFoundError(UserError):
    """An administrative action on an account or key that does not exist."""

    code = 40400
    status = 404


class AlreadyExistsError(UserError):
    """An account (or admin key) whose name is already taken. 40900: Ably has no code of its own for a
    conflict; this follows its status-times-100 pattern."""

    code = 40900
    status = 409


class DatabaseError(AuthServerError):
    """The accounts database cannot be opened (a missing directory, not a database file)."""


class ListenError(AuthServerError):
    """A server cannot listen on its address (the port is in use, the address is not this machine's,
    no permission): the message names the address, the server it was for and how to move it."""


class RateLimitedError(AuthServerError):
    """Too many attempts in a window; clients may try again later."""

    code = 42910
    status = 429


class UnavailableError(AuthServerError):
    """The service cannot answer right now (database busy or unreachable); clients retry."""

    code = 50300
    status = 503
    retry_after = 1


class OverloadedError(UnavailableError):
    """More requests queued for the event loop than this process's adaptive limit admits, or
    ``AUTHSERVER_MAX_IN_FLIGHT`` in flight (see :mod:`authserver.server.guard`): a token request is
    refused at once, before any work, and the client retries (Ably has no code of its own for an
    overloaded auth server: 50300 is its "service unavailable", which every Ably SDK retries)."""


class StoreUnavailableError(UnavailableError):
    """The accounts database did not answer (locked, unreachable, full): a 503, counted as a store error."""


class TokenError(AuthServerError):
    """A token that is not acceptable (malformed, expired, wrong key, revoked...)."""

    code = 40140
    status = 401
