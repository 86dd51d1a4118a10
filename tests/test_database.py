"""The accounts database: created on first use, and a busy database is a retryable 503, not a crash."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from authserver.errors import DatabaseError, UnavailableError
from authserver.storage.sqlite import Database


def test_the_file_and_schema_are_created_on_first_use(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "new.db"))
    tables = {row[0] for row in db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.close()
    assert {"users", "sessions"} <= tables


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="does not exist"):
        Database(str(tmp_path / "nowhere" / "x.db"))


def test_a_database_locked_by_another_process_is_unavailable_503(tmp_path: Path) -> None:
    path = str(tmp_path / "busy.db")
    db = Database(path, busy_timeout=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(UnavailableError) as caught:
            db.execute("DELETE FROM sessions WHERE expires < 0")
        assert caught.value.status == 503
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert db.execute("DELETE FROM sessions WHERE expires < 0") == 0  # and it recovers
    db.close()


def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database\n" * 100, encoding="utf-8")
    with pytest.raises(DatabaseError, match="file is not a database"):
        Database(str(path))
    assert path.read_text(encoding="utf-8") == "not a database\n" * 100
