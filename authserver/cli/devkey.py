"""The development key: the throwaway key of the embedded sandbox, shared by ``serve`` and ``token``.

In development mode (no ABLY_API_KEY) there is no real key. ``serve`` signs with a throwaway key that
only its embedded sandbox accepts. The key is kept in a file beside the accounts database,
``<database>.dev-key`` (mode 0600, git-ignored), so that

- ``authserver token`` signs tokens the running development sandbox accepts, with no setting at all;
- a restarted ``serve`` keeps the key, and tokens minted before the restart stay valid.

Whichever command runs first makes the file. It grants nothing but access to a local sandbox; delete it
to make a new key. An in-memory database has no file beside it: the key then lives only in the process.

Beside the key, made with it, ``<database>.dev-session-secret`` (mode 0600) holds the secret that signs
development mode's session cookies (unless SESSION_SECRET is set), so a restart keeps the sessions too.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from pathlib import Path

from authserver.config import MIN_SESSION_SECRET
from authserver.core.keys import AblyKey, parse_api_key
from authserver.errors import ConfigError, KeyFormatError

SUFFIX = ".dev-key"
#: Beside the key: the secret that signs development mode's session cookies.
SESSION_SECRET_SUFFIX = ".dev-session-secret"  # noqa: S105 - a file name, not a secret


def development_key_path(database_path: str) -> Path | None:
    """Where the development key of this database lives; None for an in-memory database or a server."""
    if database_path in (":memory:", ""):
        return None
    return Path(database_path + SUFFIX)


def new_development_key() -> AblyKey:
    """A fresh throwaway key for a development sandbox."""
    return AblyKey(name=f"dev.{secrets.token_hex(3)}", secret=secrets.token_urlsafe(32))


def read_development_key(path: Path) -> AblyKey | None:
    """The key kept in ``path``, or None when there is none yet.

    :raises ConfigError: the file is readable by others, or does not hold a key.
    """
    text = _read_private(path, "development key")
    if text is None:
        return None
    try:
        return parse_api_key(text, label="development key")
    except KeyFormatError as exc:
        # NOTE: the message never quotes the file's content.
        raise ConfigError([f"{str(path)!r}: {exc.message}; delete the file to make a new key"]) from None


def development_key(database_path: str) -> tuple[AblyKey, Path | None]:
    """The development key of this database, made (and kept, mode 0600) on first use, with the
    development session secret beside it (see :func:`development_session_secret`).

    :returns: the key and the file it is kept in (None: in memory only).
    :raises ConfigError: the file is unusable (see :func:`read_development_key`).
    """
    path = development_key_path(database_path)
    if path is None:
        return new_development_key(), None
    existing = read_development_key(path)
    if existing is not None:
        return existing, path
    key = new_development_key()
    if _keep(path, f"{key.name}:{key.secret}\n", "development key"):
        development_session_secret(database_path)
        return key, path
    made = read_development_key(path)  # another command made it just now: use that one
    if made is None:  # pragma: no cover - removed again in between
        raise ConfigError([f"development key {str(path)!r} vanished while it was read"])
    return made, path


def development_session_secret_path(database_path: str) -> Path | None:
    """Where the development session secret of this database lives, beside its development key;
    None for an in-memory database or a server."""
    if database_path in (":memory:", ""):
        return None
    return Path(database_path + SESSION_SECRET_SUFFIX)


def development_session_secret(database_path: str) -> str | None:
    """The secret that signs the session cookies of development mode, made (and kept, mode 0600) with
    the development key, so that a restarted ``serve`` keeps everyone logged in.

    :returns: the secret, or None for an in-memory database (then it is the process's own).
    :raises ConfigError: the file is readable by others, or does not hold a secret.
    """
    path = development_session_secret_path(database_path)
    if path is None:
        return None
    existing = _read_session_secret(path)
    if existing is not None:
        return existing
    _keep(path, secrets.token_urlsafe(32) + "\n", "development session secret")
    made = _read_session_secret(path)  # ours, or the one another command made just now
    if made is None:  # pragma: no cover - removed again in between
        raise ConfigError([f"development session secret {str(path)!r} vanished while it was read"])
    return made


def _read_session_secret(path: Path) -> str | None:
    text = _read_private(path, "development session secret")
    if text is None:
        return None
    secret = text.strip()
    if len(secret) < MIN_SESSION_SECRET or not secret.isascii() or not secret.isprintable():
        # NOTE: the message never quotes the file's content.
        raise ConfigError([f"{str(path)!r} holds no session secret; delete the file to make a new one"])
    return secret


def _read_private(path: Path, what: str) -> str | None:
    """The text of ``path``, or None when there is none yet. :raises ConfigError: others may read it."""
    try:
        info = path.stat()
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError) as exc:
        raise ConfigError([f"{what} {str(path)!r} cannot be read ({type(exc).__name__})"]) from None
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigError([f"{what} {str(path)!r} is readable by other users: chmod 600 it"])
    return text


def _keep(path: Path, text: str, what: str) -> bool:
    """Write ``text`` to ``path`` (mode 0600) unless it exists. :returns: whether this call made it."""
    try:
        # Written in full under a temporary name, then linked into place: another command sees no
        # file or the whole text, never half of it, and the first to link wins.
        fd, temporary = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(text)
            os.link(temporary, path)
        finally:
            os.unlink(temporary)
    except FileExistsError:
        return False
    except OSError as exc:
        raise ConfigError([f"{what} {str(path)!r} cannot be created ({exc.strerror})"]) from None
    return True
