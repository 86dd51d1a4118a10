"""The development key: the throwaway key of the embedded sandbox, shared by ``serve`` and ``token``.

In development mode (no ABLY_API_KEY) there is no real key. ``serve`` signs with a throwaway key that
only its embedded sandbox accepts. The key is kept in a file beside the accounts database,
``<database>.dev-key`` (mode 0600, git-ignored), so that

- ``authserver token`` signs tokens the running development sandbox accepts, with no setting at all;
- a restarted ``serve`` keeps the key, and tokens minted before the restart stay valid.

Whichever command runs first makes the file. It grants nothing but access to a local sandbox; delete it
to make a new key. An in-memory database has no file beside it: the key then lives only in the process.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from pathlib import Path

from authserver.core.keys import AblyKey, parse_api_key
from authserver.errors import ConfigError, KeyFormatError

SUFFIX = ".dev-key"


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
    try:
        info = path.stat()
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError) as exc:
        raise ConfigError([f"development key {str(path)!r} cannot be read ({type(exc).__name__})"]) from None
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigError([f"development key {str(path)!r} is readable by other users: chmod 600 it"])
    try:
        return parse_api_key(text, label="development key")
    except KeyFormatError as exc:
        # NOTE: the message never quotes the file's content.
        raise ConfigError([f"{str(path)!r}: {exc.message}; delete the file to make a new key"]) from None


def development_key(database_path: str) -> tuple[AblyKey, Path | None]:
    """The development key of this database, made (and kept, mode 0600) on first use.

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
    try:
        # Written in full under a temporary name, then linked into place: another command sees no
        # file or the whole key, never half of one, and the first to link wins.
        fd, temporary = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(f"{key.name}:{key.secret}\n")
            os.link(temporary, path)
        finally:
            os.unlink(temporary)
    except FileExistsError:  # another command made it just now: use that one
        made = read_development_key(path)
        if made is None:  # pragma: no cover - removed again in between
            raise ConfigError([f"development key {str(path)!r} vanished while it was read"]) from None
        return made, path
    except OSError as exc:
        raise ConfigError([f"development key {str(path)!r} cannot be created ({exc.strerror})"]) from None
    return key, path
