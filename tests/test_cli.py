"""The ``authserver`` command: exit codes and output of ``users``, ``token`` and ``check``.

Settings come from the process environment (``monkeypatch``) as they would for a real command, in
a temporary directory so no ``.env`` is picked up; accounts live in a real SQLite file there.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest

from authserver.cli import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, main
from authserver.config import SETTINGS_HELP
from authserver.database import Database
from authserver.identity.passwords import Passwords
from authserver.identity.users import UserStore
from authserver.policy import load_policy
from authserver.tokenrequests import compute_mac

KEY_SECRET = "cli-test-key-secret-0123456789-abcdefghij"
API_KEY = f"appId.keyId:{KEY_SECRET}"
SESSION_SECRET = "cli-test-session-secret-0123456789-abcdef"
PASSWORD = "pw-Never-Printed-42"
NOW = 1_700_000_000.0


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@dataclass(frozen=True)
class Cli:
    capsys: pytest.CaptureFixture[str]
    database: Path

    def __call__(self, *argv: str, stdin: str = "") -> Result:
        self.capsys.readouterr()  # drop anything printed before this command
        code = main(list(argv), stdin=io.StringIO(stdin))
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def store(self) -> UserStore:
        """The same accounts database, opened directly (cheap argon2 parameters for set-up)."""
        db = Database(str(self.database))
        return UserStore(db, Passwords(time_cost=1, memory_cost=8192, parallelism=1), load_policy(None))


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # main() configures process-wide logging, as a command should; put it back for the next test.
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = saved[0], saved[1]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    for name in SETTINGS_HELP:
        monkeypatch.delenv(name, raising=False)
    database = tmp_path / "users.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.chdir(tmp_path)
    return Cli(capsys, database)


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABLY_API_KEY", API_KEY)
    monkeypatch.setenv("SESSION_SECRET", SESSION_SECRET)


@pytest.fixture
def alice(cli: Cli) -> None:
    store = cli.store()
    store.add("alice", PASSWORD, role="user", client_id=None, now=NOW)
    store.db.close()


def user_lines(cli: Cli) -> list[str]:
    result = cli("users", "list")
    assert result.code == EXIT_OK, result.err
    return result.out.splitlines()


# --- users ----------------------------------------------------------------------------------------


def test_users_add_reads_the_password_from_stdin(cli: Cli) -> None:
    result = cli("users", "add", "alice", "--role", "user", stdin=f"{PASSWORD}\n")
    assert result == Result(EXIT_OK, "added alice (clientId alice, role user)\n", "")
    store = cli.store()
    assert store.verify_login("alice", PASSWORD).client_id == "alice"
    store.db.close()


def test_users_add_with_a_client_id_and_the_default_role(cli: Cli) -> None:
    result = cli("users", "add", "bob", "--client-id", "bob@example.com", stdin=f"{PASSWORD}\n")
    assert result.code == EXIT_OK
    assert result.out == "added bob (clientId bob@example.com, role user)\n"


def test_users_add_duplicate_fails_with_a_message(cli: Cli, alice: None) -> None:
    result = cli("users", "add", "alice", stdin=f"{PASSWORD}\n")
    assert result.code == EXIT_ERROR
    assert result.err == "authserver: username or clientId already in use: 'alice' / 'alice'\n"
    assert result.out == ""


def test_users_add_with_an_unknown_role_fails(cli: Cli) -> None:
    result = cli("users", "add", "alice", "--role", "boss", stdin=f"{PASSWORD}\n")
    assert result.code == EXIT_ERROR
    assert "role 'boss' is not defined by the policy" in result.err
    assert user_lines(cli) == ["no users"]


@pytest.mark.parametrize(("stdin", "message"), [("", "no password on standard input"), ("\n", "password is empty")])
def test_users_add_without_a_password_fails(cli: Cli, stdin: str, message: str) -> None:
    result = cli("users", "add", "alice", stdin=stdin)
    assert (result.code, result.err) == (EXIT_ERROR, f"authserver: {message}\n")


def test_users_add_with_an_unsafe_name_fails(cli: Cli) -> None:
    result = cli("users", "add", "a:b", stdin=f"{PASSWORD}\n")
    assert result.code == EXIT_ERROR
    assert "username" in result.err


def test_users_list_shows_every_account(cli: Cli, alice: None) -> None:
    cli("users", "add", "bob", "--role", "admin", stdin=f"{PASSWORD}\n")
    assert user_lines(cli) == [
        "alice\tclientId=alice\trole=user\tactive",
        "bob\tclientId=bob\trole=admin\tactive",
    ]


def test_users_list_with_no_accounts(cli: Cli) -> None:
    assert user_lines(cli) == ["no users"]


def test_users_set_role(cli: Cli, alice: None) -> None:
    assert cli("users", "set-role", "alice", "admin") == Result(EXIT_OK, "alice: role admin\n", "")
    assert user_lines(cli) == ["alice\tclientId=alice\trole=admin\tactive"]


def test_users_set_role_to_an_unknown_role_fails(cli: Cli, alice: None) -> None:
    result = cli("users", "set-role", "alice", "boss")
    assert result.code == EXIT_ERROR
    assert "role 'boss' is not defined by the policy" in result.err
    assert user_lines(cli) == ["alice\tclientId=alice\trole=user\tactive"]


def test_users_disable_and_enable(cli: Cli, alice: None) -> None:
    assert cli("users", "disable", "alice") == Result(EXIT_OK, "alice: disabled\n", "")
    assert user_lines(cli) == ["alice\tclientId=alice\trole=user\tdisabled"]
    assert cli("users", "enable", "alice") == Result(EXIT_OK, "alice: enabled\n", "")
    assert user_lines(cli) == ["alice\tclientId=alice\trole=user\tactive"]


def test_users_remove(cli: Cli, alice: None) -> None:
    assert cli("users", "remove", "alice") == Result(EXIT_OK, "removed alice\n", "")
    assert user_lines(cli) == ["no users"]


@pytest.mark.parametrize(
    "argv",
    [("set-role", "nobody", "user"), ("disable", "nobody"), ("enable", "nobody"), ("remove", "nobody")],
)
def test_users_command_on_an_unknown_user_fails(cli: Cli, argv: tuple[str, ...]) -> None:
    assert cli("users", *argv) == Result(EXIT_ERROR, "", "authserver: no such user: 'nobody'\n")


def test_users_set_password(cli: Cli, alice: None) -> None:
    result = cli("users", "set-password", "alice", stdin="a-new-password\n")
    assert result == Result(EXIT_OK, "alice: password changed\n", "")
    store = cli.store()
    assert store.verify_login("alice", "a-new-password").subject == "alice"
    store.db.close()


def test_password_is_never_printed(cli: Cli) -> None:
    outputs = [
        cli("users", "add", "alice", stdin=f"{PASSWORD}\n"),
        cli("users", "add", "alice", stdin=f"{PASSWORD}\n"),  # duplicate: an error message
        cli("users", "set-password", "alice", stdin=f"{PASSWORD}-2\n"),
    ]
    for result in outputs:
        assert PASSWORD not in result.out + result.err
        assert "$argon2id$" not in result.out + result.err


# --- token ----------------------------------------------------------------------------------------


def _verified_claims(token: str) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(token, KEY_SECRET, algorithms=["HS256"])
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "kid": "appId.keyId", "typ": "JWT"}
    return claims


USER_CAPABILITY = (
    '{"announcements":["history","subscribe"],'
    '"chat:*":["history","presence","publish","subscribe"],'
    '"private:alice":["*"]}'
)


def test_token_format_jwt_prints_a_verifiable_jwt(cli: Cli, production: None, alice: None) -> None:
    result = cli("token", "--user", "alice", "--format", "jwt")
    assert result.code == EXIT_OK, result.err
    claims = _verified_claims(result.out.strip())
    assert claims["x-ably-clientId"] == "alice"
    assert claims["x-ably-capability"] == USER_CAPABILITY
    assert claims["exp"] == claims["iat"] + 3600  # type: ignore[operator]


def test_token_format_details_is_the_default(cli: Cli, production: None, alice: None) -> None:
    result = cli("token", "--user", "alice")
    assert result.code == EXIT_OK, result.err
    details = json.loads(result.out)
    assert set(details) == {"token", "keyName", "issued", "expires", "capability", "clientId"}
    claims = _verified_claims(details["token"])
    assert details["keyName"] == "appId.keyId"
    assert details["clientId"] == claims["x-ably-clientId"] == "alice"
    assert details["capability"] == claims["x-ably-capability"] == USER_CAPABILITY
    assert details["issued"] == claims["iat"] * 1000  # type: ignore[operator]
    assert details["expires"] == claims["exp"] * 1000  # type: ignore[operator]
    assert cli("token", "--user", "alice", "--format", "details").code == EXIT_OK


def test_token_format_tokenrequest_is_signed_with_the_key(cli: Cli, production: None, alice: None) -> None:
    result = cli("token", "--user", "alice", "--format", "tokenrequest")
    assert result.code == EXIT_OK, result.err
    request = json.loads(result.out)
    assert set(request) == {"keyName", "ttl", "capability", "clientId", "timestamp", "nonce", "mac"}
    assert (request["keyName"], request["clientId"], request["ttl"]) == ("appId.keyId", "alice", 3_600_000)
    assert request["capability"] == USER_CAPABILITY
    assert request["mac"] == compute_mac(
        key_name=request["keyName"],
        ttl=request["ttl"],
        capability=request["capability"],
        client_id=request["clientId"],
        timestamp=request["timestamp"],
        nonce=request["nonce"],
        secret=KEY_SECRET,
    )
    assert KEY_SECRET not in result.out


def test_token_with_a_capability_inside_the_policy_is_narrowed(cli: Cli, production: None, alice: None) -> None:
    result = cli("token", "--user", "alice", "--format", "jwt", "--capability", '{"chat:lobby":["subscribe"]}')
    assert result.code == EXIT_OK, result.err
    assert _verified_claims(result.out.strip())["x-ably-capability"] == '{"chat:lobby":["subscribe"]}'


def test_token_ttl_is_clamped_by_the_role(cli: Cli, production: None, alice: None) -> None:
    result = cli("token", "--user", "alice", "--format", "jwt", "--ttl", "86400")
    claims = _verified_claims(result.out.strip())
    assert claims["exp"] == claims["iat"] + 3600  # type: ignore[operator]


@pytest.mark.parametrize(
    ("capability", "message"),
    [
        ('{"secret-channel":["publish"]}', "requested capability is not allowed for this user"),
        ('{"private:bob":["*"]}', "requested capability is not allowed for this user"),
        ("{not json", "capability is not valid JSON"),
    ],
)
def test_token_with_a_capability_outside_the_policy_fails(
    cli: Cli, production: None, alice: None, capability: str, message: str
) -> None:
    result = cli("token", "--user", "alice", "--capability", capability)
    assert result.code != EXIT_OK
    assert result.err == f"authserver: {message}\n"
    assert result.out == ""


def test_token_for_an_unknown_user_fails(cli: Cli, production: None) -> None:
    assert cli("token", "--user", "nobody") == Result(EXIT_ERROR, "", "authserver: no such user: 'nobody'\n")


def test_token_for_a_disabled_user_fails(cli: Cli, production: None, alice: None) -> None:
    cli("users", "disable", "alice")
    assert cli("token", "--user", "alice") == Result(EXIT_ERROR, "", "authserver: user 'alice' is disabled\n")


@pytest.mark.parametrize("ttl", ["0", "-5"])
def test_token_with_a_ttl_that_is_not_positive_fails(cli: Cli, production: None, alice: None, ttl: str) -> None:
    result = cli("token", "--user", "alice", f"--ttl={ttl}")
    assert (result.code, result.err) == (EXIT_ERROR, "authserver: --ttl must be a positive number of seconds\n")


def test_token_without_an_api_key_is_a_configuration_error(cli: Cli, alice: None) -> None:
    result = cli("token", "--user", "alice")
    assert result.code == EXIT_CONFIG
    assert "ABLY_API_KEY" in result.err
    assert result.out == ""


# --- check ----------------------------------------------------------------------------------------


def test_check_without_settings_is_ok_in_development_mode_with_a_demo_warning(cli: Cli) -> None:
    result = cli("check")
    assert result.code == EXIT_OK
    lines = result.out.splitlines()
    assert lines[0].startswith("configuration OK: development")
    assert "  Ably: an embedded sandbox on port 8001" in lines  # what serve will really use
    assert any(line.startswith("  session secret: ephemeral") for line in lines)
    assert "  WARNING: demo login is ON: any username and password logs in. NOT FOR PRODUCTION." in lines
    assert result.err == ""


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ABLY_ENDPOINT", "http://127.0.0.1:8001", "ABLY_ENDPOINT: set ABLY_API_KEY"),
        ("DATABASE_URL", "sqlite:////nonexistent-dir/x.db", "DATABASE_URL: the directory"),
    ],
)
def test_check_refuses_what_serve_would_refuse(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    result = cli("check")
    assert result.code == EXIT_CONFIG
    assert message in result.err


def test_check_in_production_names_the_key_but_never_a_secret(cli: Cli, production: None) -> None:
    result = cli("check")
    assert result.code == EXIT_OK
    assert result.out.startswith("configuration OK: production\n")
    assert "  signing key: appId.keyId (1 key(s) configured)" in result.out.splitlines()
    assert "  Ably: real Ably" in result.out.splitlines()
    assert "ephemeral" not in result.out
    assert "WARNING" not in result.out
    assert KEY_SECRET not in result.out + result.err
    assert SESSION_SECRET not in result.out + result.err


def test_check_warns_when_demo_login_is_on_in_production(
    cli: Cli, production: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHSERVER_DEMO_LOGIN", "true")
    result = cli("check")
    assert result.code == EXIT_OK
    assert "WARNING: demo login is ON" in result.out


def test_check_with_a_bad_setting_fails_naming_it(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHSERVER_PORT", "eighty")
    result = cli("check")
    assert result.code == EXIT_CONFIG
    assert "  - AUTHSERVER_PORT: 'eighty' is not a whole number\n" in result.err
    assert result.out == ""


def test_check_reports_every_bad_setting_without_secrets(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABLY_API_KEY", f"appId.keyId:{KEY_SECRET}:extra")
    monkeypatch.setenv("SESSION_SECRET", "short-SESSION-secret")
    monkeypatch.setenv("TOKEN_TTL", "1")
    result = cli("check")
    assert result.code == EXIT_CONFIG
    for name in ("ABLY_API_KEY", "SESSION_SECRET", "TOKEN_TTL"):
        assert f"  - {name}: " in result.err
    assert KEY_SECRET not in result.err
    assert "short-SESSION-secret" not in result.err


def test_check_reads_a_dot_env_file_in_the_working_directory(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"ABLY_API_KEY={API_KEY}\nSESSION_SECRET={SESSION_SECRET}\n", encoding="utf-8")
    result = cli("check")
    assert result.code == EXIT_OK
    assert result.out.startswith("configuration OK: production\n")


def test_a_bad_setting_stops_every_command_with_exit_3(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN_TTL", "soon")
    result = cli("users", "list")
    assert result.code == EXIT_CONFIG
    assert "TOKEN_TTL" in result.err


def test_missing_subcommand_is_a_usage_error(cli: Cli) -> None:
    with pytest.raises(SystemExit) as exc_info:
        main([])
    assert exc_info.value.code == 2
