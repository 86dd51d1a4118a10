"""The command line's side of the admin API: ``api-keys`` (create prints the key once, list, revoke),
``users sessions`` and ``users logout``, ``revoke --allow-reauth-margin``: the same operations as
``/admin/v1``, on a real SQLite file."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from realservers import free_port

from authserver.cli import EXIT_ERROR, EXIT_OK
from authserver.identity.adminkeys import key_hash
from authserver.identity.sessions import session_revocation_key

from .conftest import run
from helpers import API_KEY

PASSWORD = "pw-Never-Printed-42"


@pytest.fixture
def environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    return {
        "ABLY_API_KEY": API_KEY,
        "DATABASE_URL": f"sqlite:///{tmp_path}/authserver.db",
        # revocation on; Ably where nobody listens: what is revoked stays queued for a running serve
        "ABLY_ENDPOINT": f"http://127.0.0.1:{free_port()}",
    }


def rows(environ: dict[str, str], sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(environ["DATABASE_URL"].removeprefix("sqlite:///")) as conn:
        return conn.execute(sql).fetchall()


def test_api_keys_create_prints_the_key_once_and_stores_only_its_hash(
    capsys: pytest.CaptureFixture[str], environ: dict[str, str]
) -> None:
    code, out, err = run(capsys, environ, "api-keys", "create", "backend")
    assert code == EXIT_OK
    key = out.strip()
    assert out == f"{key}\n" and key.startswith("asadm_")
    key_id = key.split("_")[1]
    assert f"admin API key 'backend' (id {key_id}) created; the key is shown this once" in err
    assert rows(environ, "SELECT key_id, name, key_hash FROM admin_keys") == [(key_id, "backend", key_hash(key))]
    code, out, _ = run(capsys, environ, "api-keys", "list")
    assert (code, out.split("\t")[:2], out.rstrip().split("\t")[-2:]) == (
        EXIT_OK,
        ["backend", f"id={key_id}"],
        ["last-used=never", "active"],
    )
    assert key not in out


def test_api_keys_revoke_by_name_then_the_name_is_free_again(
    capsys: pytest.CaptureFixture[str], environ: dict[str, str]
) -> None:
    run(capsys, environ, "api-keys", "create", "ci")
    assert run(capsys, environ, "api-keys", "revoke", "ci")[:2] == (EXIT_OK, "revoked ci\n")
    code, out, err = run(capsys, environ, "api-keys", "revoke", "ci")
    assert (code, out, err.splitlines()[-1]) == (EXIT_ERROR, "", "authserver: no unrevoked admin API key named 'ci'")
    assert run(capsys, environ, "api-keys", "create", "ci")[0] == EXIT_OK
    listed = run(capsys, environ, "api-keys", "list")[1].splitlines()
    assert [line.split("\t")[-1].split(" ")[0] for line in listed] == ["revoked", "active"]


def test_users_sessions_and_logout_everywhere(capsys: pytest.CaptureFixture[str], environ: dict[str, str]) -> None:
    assert run(capsys, environ, "users", "add", "alice", stdin=f"{PASSWORD}\n")[0] == EXIT_OK
    assert run(capsys, environ, "users", "sessions", "alice")[1] == "alice: no sessions\n"
    with sqlite3.connect(environ["DATABASE_URL"].removeprefix("sqlite:///")) as conn:
        conn.execute(
            "INSERT INTO sessions (id_hash, username, client_id, role, source, expires) VALUES (?, ?, ?, ?, ?, ?)",
            ("abc123", "alice", "alice", "user", "account", time.time() + 3600),
        )
    code, out, _ = run(capsys, environ, "users", "sessions", "alice")
    assert code == EXIT_OK and out.startswith(
        f"{session_revocation_key('abc123')}\tclientId=alice\trole=user\texpires="
    )
    assert run(capsys, environ, "users", "logout", "alice")[:2] == (EXIT_OK, "alice: logged out everywhere\n")
    assert run(capsys, environ, "users", "sessions", "alice")[1] == "alice: no sessions\n"
    assert rows(environ, "SELECT target, reason FROM revocation_outbox") == [("clientId:alice", "everywhere")]
    assert run(capsys, environ, "users", "logout", "nobody")[2].splitlines()[-1] == "authserver: no such user: 'nobody'"


def test_revoke_with_allow_reauth_margin_queues_it_so(
    capsys: pytest.CaptureFixture[str], environ: dict[str, str]
) -> None:
    assert run(capsys, environ, "db", "upgrade")[0] == EXIT_OK  # revoke works on a database that is there
    code, out, _ = run(capsys, environ, "revoke", "--client-id", "bob", "--allow-reauth-margin")
    assert (code, out) == (EXIT_OK, "revoked clientId:bob\n")
    assert rows(environ, "SELECT target, reauth, reason FROM revocation_outbox") == [("clientId:bob", 1, "operator")]


@pytest.mark.parametrize("when", ["2020-01-01T00:00:00", "0", "99999999999999999999", "2999-01-01T00:00:00Z"], ids=str)
def test_revoke_issued_before_outside_ablys_hour_is_refused_before_anything_is_queued(
    capsys: pytest.CaptureFixture[str], environ: dict[str, str], when: str
) -> None:
    assert run(capsys, environ, "db", "upgrade")[0] == EXIT_OK
    code, _, err = run(capsys, environ, "revoke", "--client-id", "bob", "--issued-before", when)
    assert code != EXIT_OK and "not in the future and at most an hour ago" in err, err
    assert rows(environ, "SELECT target FROM revocation_outbox") == []
    recent = str(int(time.time() * 1000) - 60_000)
    assert run(capsys, environ, "revoke", "--client-id", "bob", "--issued-before", recent)[0] == EXIT_OK


def test_api_keys_list_and_revoke_never_create_a_database(
    capsys: pytest.CaptureFixture[str], environ: dict[str, str], tmp_path: Path
) -> None:
    for argv in (("api-keys", "list"), ("api-keys", "revoke", "ci")):
        code, _, err = run(capsys, environ, *argv)
        assert code == 3 and f"no database at {tmp_path}/authserver.db (nothing created)" in err
    assert not (tmp_path / "authserver.db").exists()
    assert run(capsys, environ, "api-keys", "create", "ci")[0] == EXIT_OK


def test_check_says_how_the_admin_api_stands(capsys: pytest.CaptureFixture[str], environ: dict[str, str]) -> None:
    environ["SESSION_SECRET"] = "s" * 40
    out = run(capsys, environ, "check")[1]
    assert (
        "  admin API: /admin/v1 once an admin API key exists (authserver api-keys create NAME);"
        " 120/minute per credential\n" in out
    )
    environ["AUTHSERVER_ADMIN_API"] = "off"
    assert "  admin API: off (AUTHSERVER_ADMIN_API=off)\n" in run(capsys, environ, "check")[1]
