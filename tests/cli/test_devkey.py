"""The development key that `serve` (its embedded sandbox) and `token` share, kept beside the database."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from authserver.cli.devkey import (
    development_key,
    development_key_path,
    development_session_secret,
    development_session_secret_path,
    read_development_key,
)
from authserver.errors import ConfigError


def test_the_key_is_made_on_first_use_readable_by_its_owner_only(tmp_path: Path) -> None:
    database = str(tmp_path / "authserver.db")
    key, path = development_key(database)
    assert path == tmp_path / "authserver.db.dev-key" == development_key_path(database)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key.name.startswith("dev.") and len(key.secret) >= 32
    # With it, the development session secret; no temporary file left behind.
    assert sorted(tmp_path.iterdir()) == [path, tmp_path / "authserver.db.dev-session-secret"]


def test_the_same_key_is_used_after_a_restart(tmp_path: Path) -> None:
    database = str(tmp_path / "authserver.db")
    assert development_key(database) == development_key(database)
    assert read_development_key(tmp_path / "authserver.db.dev-key") == development_key(database)[0]


def test_commands_starting_at_once_agree_on_one_key(tmp_path: Path) -> None:
    database = str(tmp_path / "authserver.db")
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = {result[0] for result in pool.map(lambda _: development_key(database), range(16))}
    assert len(keys) == 1


def test_an_in_memory_database_has_a_key_for_this_process_only(tmp_path: Path) -> None:
    first, path = development_key(":memory:")
    assert path is None and development_key_path(":memory:") is None
    assert development_key(":memory:")[0] != first


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    database = str(tmp_path / "authserver.db")
    _, path = development_key(database)
    assert path is not None
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by other users: chmod 600"):
        development_key(database)


def test_a_key_file_that_holds_no_key_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / "authserver.db.dev-key"
    path.write_text("secret-looking garbage\n", encoding="ascii")
    path.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        development_key(str(tmp_path / "authserver.db"))
    assert "delete the file to make a new key" in caught.value.message
    assert "garbage" not in caught.value.message


def test_the_session_secret_is_made_with_the_key_readable_by_its_owner_only(tmp_path: Path) -> None:
    database = str(tmp_path / "authserver.db")
    development_key(database)
    path = development_session_secret_path(database)
    assert path == tmp_path / "authserver.db.dev-session-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = development_session_secret(database)
    assert secret is not None and len(secret) >= 32
    assert path.read_text(encoding="ascii").strip() == secret


def test_the_same_session_secret_is_used_after_a_restart(tmp_path: Path) -> None:
    database = str(tmp_path / "authserver.db")
    assert development_session_secret(database) == development_session_secret(database)


def test_a_key_made_before_session_secrets_were_kept_gets_one_on_first_use(tmp_path: Path) -> None:
    database = str(tmp_path / "authserver.db")
    development_key(database)
    path = development_session_secret_path(database)
    assert path is not None
    path.unlink()
    assert development_session_secret(database) == development_session_secret(database) is not None


def test_an_in_memory_database_keeps_no_session_secret() -> None:
    assert development_session_secret(":memory:") is None
    assert development_session_secret_path(":memory:") is None


def test_a_session_secret_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    database = str(tmp_path / "authserver.db")
    development_session_secret(database)
    path = development_session_secret_path(database)
    assert path is not None
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users: chmod 600"):
        development_session_secret(database)


def test_a_session_secret_file_too_short_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / "authserver.db.dev-session-secret"
    path.write_text("short-s3cret\n", encoding="ascii")
    path.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        development_session_secret(str(tmp_path / "authserver.db"))
    assert "delete the file to make a new one" in caught.value.message
    assert "short-s3cret" not in caught.value.message
