"""The command line against PostgreSQL: accounts, tokens, check and schema upgrades work as on SQLite."""

from __future__ import annotations

import asyncio
import json

import jwt
import pytest
from realservers import Postgres, free_port

from authserver.cli import EXIT_CONFIG, EXIT_ERROR, EXIT_OK
from authserver.storage.postgres import safe_url
from authserver.storage.schema import SCHEMA_VERSION

from .conftest import run
from conftest import fresh_postgres_url
from helpers import API_KEY, KEY_SECRET, SESSION_SECRET

PASSWORD = "correct horse battery"


@pytest.fixture
def environ() -> dict[str, str]:
    """The environment of the commands a test runs."""
    return {"ABLY_API_KEY": API_KEY, "SESSION_SECRET": SESSION_SECRET}


@pytest.fixture
def database_url(postgres: Postgres, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> str:
    url = asyncio.run(fresh_postgres_url(postgres))
    environ["DATABASE_URL"] = url
    monkeypatch.chdir(str(tmp_path))
    return url


def test_accounts_and_tokens_on_postgres(
    database_url: str, environ: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    named = f"authserver: database: PostgreSQL {safe_url(database_url)}\n"
    assert run(capsys, environ, "users", "add", "alice", stdin=f"{PASSWORD}\n") == (
        EXIT_OK,
        "added alice (clientId alice, role user)\n",
        named,
    )
    assert run(capsys, environ, "users", "set-role", "alice", "admin")[0] == EXIT_OK
    assert run(capsys, environ, "users", "list")[1] == "alice\tclientId=alice\trole=admin\tactive\n"
    code, out, _ = run(capsys, environ, "token", "--user", "alice", "--format", "jwt")
    assert code == EXIT_OK
    assert jwt.decode(out.strip(), KEY_SECRET, algorithms=["HS256"])["x-ably-clientId"] == "alice"
    assert run(capsys, environ, "users", "disable", "alice")[0] == EXIT_OK
    assert run(capsys, environ, "token", "--user", "alice") == (
        EXIT_ERROR,
        "",
        named + "authserver: user 'alice' is disabled\n",
    )
    # (removing revokes alice's tokens: stderr says whether Ably took the revocation now)
    assert run(capsys, environ, "users", "remove", "alice")[:2] == (EXIT_OK, "removed alice\n")
    assert run(capsys, environ, "users", "list")[1] == "no users\n"


def test_check_connects_and_reports_the_database_without_its_password(
    database_url: str, environ: dict[str, str], postgres: Postgres, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, environ, "users", "add", "alice", stdin=f"{PASSWORD}\n")
    code, out, _ = run(capsys, environ, "check")
    assert code == EXIT_OK
    line = f"  database: PostgreSQL postgresql://authserver@127.0.0.1:{postgres.port}/authserver_test"
    assert f"{line} (1 account(s), schema version {SCHEMA_VERSION})" in out.splitlines()


def test_check_refuses_an_unreachable_database_naming_it_without_the_password(
    database_url: str, environ: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    environ["DATABASE_URL"] = f"postgresql://auth:hunter2@127.0.0.1:{port}/auth?connect_timeout=1"
    code, out, err = run(capsys, environ, "check")
    assert code == EXIT_CONFIG
    assert err == (
        "authserver: invalid configuration:\n"
        f"  - DATABASE_URL: cannot connect to the database (postgresql://auth@127.0.0.1:{port}/auth)\n"
    )
    assert "hunter2" not in out + err


def test_db_status_and_upgrade(database_url: str, environ: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, environ, "db", "status")
    assert (code, out.endswith(f": empty; this authserver uses schema version {SCHEMA_VERSION}\n")) == (
        EXIT_ERROR,
        True,
    )
    code, out, _ = run(capsys, environ, "db", "upgrade")
    assert (code, out.endswith(f": upgraded to schema version {SCHEMA_VERSION}\n")) == (EXIT_OK, True)
    assert run(capsys, environ, "db", "upgrade")[1].endswith(f": already at schema version {SCHEMA_VERSION}\n")
    code, out, _ = run(capsys, environ, "db", "status")
    assert (
        code,
        out.endswith(f": schema version {SCHEMA_VERSION}; this authserver uses schema version {SCHEMA_VERSION}\n"),
    ) == (EXIT_OK, True)
    assert "postgresql://authserver@" in out and "options" not in out


def test_serve_refuses_a_database_with_a_newer_schema(
    database_url: str, environ: dict[str, str], postgres: Postgres, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, environ, "db", "upgrade")
    schema = database_url.rsplit("%3D", 1)[1]
    postgres.psql(f"UPDATE {schema}.schema_version SET version = 99", database="authserver_test")  # noqa: S608
    code, _, err = run(capsys, environ, "serve", "--port", "0")
    assert code == EXIT_CONFIG
    assert (
        f"has schema version 99, which this authserver (schema {SCHEMA_VERSION}) does not know: refusing to use it"
        in err
    )
    assert json.dumps(err)  # one readable line, no traceback
