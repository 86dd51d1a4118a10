"""The ``authserver`` command: exit codes and output of ``users``, ``token`` and ``check``.

Settings come from a dict passed as the command's environment (``main(..., environ=...)``), run in
a temporary directory so no ``.env`` is picked up; accounts live in a real SQLite file there.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest

from authserver.cli import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, main
from authserver.cli.devkey import development_key, read_development_key
from authserver.core.keys import parse_api_key
from authserver.core.policy import load_policy
from authserver.core.tokenrequests import compute_mac
from authserver.identity.passwords import Passwords
from authserver.identity.users import UserStore
from authserver.storage.schema import SCHEMA_VERSION
from authserver.storage.sqlite import SqliteStorage

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
    #: The environment every command of the test runs with.
    environ: dict[str, str]

    def __call__(self, *argv: str, stdin: str = "") -> Result:
        self.capsys.readouterr()  # drop anything printed before this command
        code = main(list(argv), environ=self.environ, stdin=io.StringIO(stdin))
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def store(self) -> Any:
        """The same accounts, opened directly (cheap argon2 parameters for set-up): each
        :class:`UserStore` method called on it runs on a fresh event loop, the database opened for it."""
        path = str(self.database)

        class Store:
            def __getattr__(self, name: str) -> Any:
                def call(*args: Any, **kwargs: Any) -> Any:
                    async def run() -> Any:
                        storage = SqliteStorage(path)
                        users = UserStore(
                            storage.users, Passwords(time_cost=1, memory_cost=8192, parallelism=1), load_policy(None)
                        )
                        try:
                            return await getattr(users, name)(*args, **kwargs)
                        finally:
                            await storage.close()

                    return asyncio.run(run())

                return call

        return Store()


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    database = tmp_path / "users.db"
    monkeypatch.chdir(tmp_path)
    environ = {
        # A checkout asks for development mode by name; the production fixture's key overrides it.
        "AUTHSERVER_ENV": "development",
        "DATABASE_URL": f"sqlite:///{database}",
        # Whatever this checkout's set-up left in .cache/node: a local ably-js of the test's own.
        "ABLY_JS_PATH": str(_fake_ably_js(tmp_path / "ably-js")),
    }
    return Cli(capsys, database, environ)


@pytest.fixture
def production(cli: Cli) -> None:
    cli.environ.update(ABLY_API_KEY=API_KEY, SESSION_SECRET=SESSION_SECRET)


@pytest.fixture
def alice(cli: Cli) -> None:
    store = cli.store()
    store.add("alice", PASSWORD, role="user", client_id=None, now=NOW)


def user_lines(cli: Cli) -> list[str]:
    result = cli("users", "list")
    assert result.code == EXIT_OK, result.err
    return result.out.splitlines()


# --- users ----------------------------------------------------------------------------------------


def database_line(cli: Cli, *, new: bool = False) -> str:
    """What every command that works on the database says first (on stderr)."""
    return f"authserver: database: SQLite {cli.database}{' (new: created now)' if new else ''}\n"


def test_users_add_reads_the_password_from_stdin(cli: Cli) -> None:
    result = cli("users", "add", "alice", "--role", "user", stdin=f"{PASSWORD}\n")
    assert result == Result(EXIT_OK, "added alice (clientId alice, role user)\n", database_line(cli, new=True))
    store = cli.store()
    assert store.verify_login("alice", PASSWORD).client_id == "alice"


def test_users_add_with_a_client_id_and_the_default_role(cli: Cli) -> None:
    result = cli("users", "add", "bob", "--client-id", "bob@example.com", stdin=f"{PASSWORD}\n")
    assert result.code == EXIT_OK
    assert result.out == "added bob (clientId bob@example.com, role user)\n"


def test_users_add_duplicate_fails_with_a_message(cli: Cli, alice: None) -> None:
    result = cli("users", "add", "alice", stdin=f"{PASSWORD}\n")
    assert result.code == EXIT_ERROR
    assert result.err == database_line(cli) + "authserver: username or clientId already in use: 'alice' / 'alice'\n"
    assert result.out == ""


def test_users_add_with_an_unknown_role_fails(cli: Cli) -> None:
    result = cli("users", "add", "alice", "--role", "boss", stdin=f"{PASSWORD}\n")
    assert result.code == EXIT_ERROR
    assert "role 'boss' is not defined by the policy" in result.err
    assert user_lines(cli) == ["no users"]  # the database was made, but holds no account


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("", "no password on standard input"),
        ("\n", "password is empty"),
        ("short\n", "password is shorter than 8 characters (AUTHSERVER_PASSWORD_MIN_LENGTH)"),
        ("password1\n", "password is one of the most common passwords: choose another"),
        ("alice\n", "password is shorter than 8 characters"),
    ],
)
def test_users_add_with_a_password_that_is_missing_short_or_common_fails(cli: Cli, stdin: str, message: str) -> None:
    result = cli("users", "add", "alice", stdin=stdin)
    assert result.code == EXIT_ERROR
    assert result.err.splitlines()[-1].startswith(f"authserver: {message}")
    assert not cli.database.exists() or user_lines(cli) == ["no users"]


def test_users_add_takes_its_minimum_length_from_the_settings(cli: Cli) -> None:
    cli.environ["AUTHSERVER_PASSWORD_MIN_LENGTH"] = "20"
    refused = cli("users", "add", "alice", stdin=f"{PASSWORD}\n")  # 19 characters
    assert "password is shorter than 20 characters" in refused.err
    assert cli("users", "add", "alice", stdin=f"{PASSWORD}-x\n").code == EXIT_OK
    cli.environ["AUTHSERVER_PASSWORD_MIN_LENGTH"] = "6"
    assert "AUTHSERVER_PASSWORD_MIN_LENGTH" in cli("users", "list").err  # below NIST's 8: refused


@pytest.mark.parametrize(
    ("weak", "rule"), [("1234567", "shorter than 8"), ("iloveyou", "most common"), ("ALICE@example", "own name")]
)
def test_users_set_password_follows_the_same_rules(cli: Cli, weak: str, rule: str) -> None:
    assert cli("users", "add", "alice", "--client-id", "alice@example", stdin=f"{PASSWORD}\n").code == EXIT_OK
    result = cli("users", "set-password", "alice", stdin=f"{weak}\n")
    assert result.code == EXIT_ERROR and rule in result.err
    assert cli.store().verify_login("alice", PASSWORD).subject == "alice"  # the old one still holds


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


def test_users_list_with_no_accounts(cli: Cli, alice: None) -> None:
    cli("users", "remove", "alice")
    assert user_lines(cli) == ["no users"]


@pytest.mark.parametrize(
    "argv",
    [
        ("users", "list"),
        ("users", "set-role", "alice", "admin"),
        ("users", "remove", "alice"),
        ("db", "status"),
        ("revoke", "--client-id", "alice"),
    ],
)
def test_a_command_that_only_reads_or_changes_never_creates_the_database(cli: Cli, argv: tuple[str, ...]) -> None:
    result = cli(*argv)
    assert result.code == EXIT_CONFIG
    assert result.err.startswith(f"authserver: no database at {cli.database} (nothing created): run the command")
    assert "DATABASE_URL" in result.err
    assert not cli.database.exists()
    assert list(cli.database.parent.glob("*.db*")) == []


def test_users_set_role(cli: Cli, alice: None) -> None:
    assert cli("users", "set-role", "alice", "admin") == Result(EXIT_OK, "alice: role admin\n", database_line(cli))
    assert user_lines(cli) == ["alice\tclientId=alice\trole=admin\tactive"]


def test_users_set_role_to_an_unknown_role_fails(cli: Cli, alice: None) -> None:
    result = cli("users", "set-role", "alice", "boss")
    assert result.code == EXIT_ERROR
    assert "role 'boss' is not defined by the policy" in result.err
    assert user_lines(cli) == ["alice\tclientId=alice\trole=user\tactive"]


def test_users_disable_and_enable(cli: Cli, alice: None) -> None:
    assert cli("users", "disable", "alice") == Result(EXIT_OK, "alice: disabled\n", database_line(cli))
    assert user_lines(cli) == ["alice\tclientId=alice\trole=user\tdisabled"]
    assert cli("users", "enable", "alice") == Result(EXIT_OK, "alice: enabled\n", database_line(cli))
    assert user_lines(cli) == ["alice\tclientId=alice\trole=user\tactive"]


def test_users_remove(cli: Cli, alice: None) -> None:
    assert cli("users", "remove", "alice") == Result(EXIT_OK, "removed alice\n", database_line(cli))
    assert user_lines(cli) == ["no users"]


@pytest.mark.parametrize(
    "argv",
    [("set-role", "nobody", "user"), ("disable", "nobody"), ("enable", "nobody"), ("remove", "nobody")],
)
def test_users_command_on_an_unknown_user_fails(cli: Cli, alice: None, argv: tuple[str, ...]) -> None:
    expected = database_line(cli) + "authserver: no such user: 'nobody'\n"
    assert cli("users", *argv) == Result(EXIT_ERROR, "", expected)


def test_users_set_password(cli: Cli, alice: None) -> None:
    result = cli("users", "set-password", "alice", stdin="a-new-password\n")
    assert result == Result(EXIT_OK, "alice: password changed\n", database_line(cli))
    store = cli.store()
    assert store.verify_login("alice", "a-new-password").subject == "alice"


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
    # revocable tokens (the default) live at most 1 h from their back-dated iat: 3600 - 5 s from now
    assert (request["keyName"], request["clientId"], request["ttl"]) == ("appId.keyId", "alice", 3_595_000)
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
    assert result.err == database_line(cli) + f"authserver: {message}\n"
    assert result.out == ""


def test_token_for_an_unknown_user_fails(cli: Cli, production: None, alice: None) -> None:
    expected = database_line(cli) + "authserver: no such user: 'nobody'\n"
    assert cli("token", "--user", "nobody") == Result(EXIT_ERROR, "", expected)


def test_token_where_there_is_no_database_says_so_and_creates_none(cli: Cli, production: None) -> None:
    expected = (
        f"authserver: database: no SQLite file at {cli.database}: no accounts (nothing created)\n"
        "authserver: no such user: 'nobody'\n"
    )
    assert cli("token", "--user", "nobody") == Result(EXIT_ERROR, "", expected)
    assert not cli.database.exists()


def test_token_for_a_disabled_user_fails(cli: Cli, production: None, alice: None) -> None:
    cli("users", "disable", "alice")
    expected = database_line(cli) + "authserver: user 'alice' is disabled\n"
    assert cli("token", "--user", "alice") == Result(EXIT_ERROR, "", expected)


@pytest.mark.parametrize("ttl", ["0", "-5"])
def test_token_with_a_ttl_that_is_not_positive_fails(cli: Cli, production: None, alice: None, ttl: str) -> None:
    result = cli("token", "--user", "alice", f"--ttl={ttl}")
    assert (result.code, result.err.splitlines()[-1]) == (
        EXIT_ERROR,
        "authserver: --ttl must be a positive number of seconds",
    )


def test_token_without_an_api_key_signs_with_the_development_key_serve_uses(cli: Cli, alice: None) -> None:
    # Zero configuration: the token is for the embedded sandbox of `authserver serve`, whose key is
    # kept beside the database (made by whichever command runs first).
    result = cli("token", "--user", "alice", "--format", "jwt")
    assert result.code == EXIT_OK, result.err
    key_file = Path(f"{cli.database}.dev-key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = parse_api_key(key_file.read_text(encoding="ascii"))
    token = result.out.strip()
    assert jwt.get_unverified_header(token)["kid"] == key.name
    assert jwt.decode(token, key.secret, algorithms=["HS256"])["x-ably-clientId"] == "alice"
    assert f"development key {key.name}" in result.err and key.secret not in result.err
    again = cli("token", "--user", "alice", "--format", "jwt")
    assert jwt.get_unverified_header(again.out.strip())["kid"] == key.name  # the same key every time


def test_token_that_makes_the_development_key_says_a_running_serve_elsewhere_will_refuse_it(
    cli: Cli, alice: None
) -> None:
    # Run from another directory than `serve`, token finds no key beside *its* database and makes one:
    # a serve already running with another database would refuse the token, so it must not claim otherwise.
    first = cli("token", "--user", "alice")
    assert first.code == EXIT_OK, first.err
    assert "made a new development key" in first.err
    assert "which the embedded sandbox of `authserver serve` accepts" not in first.err
    assert str(cli.database) + ".dev-key" in first.err
    again = cli("token", "--user", "alice")
    assert "made a new development key" not in again.err
    assert "which the embedded sandbox of `authserver serve` accepts" in again.err


def test_serve_signs_with_the_development_key_token_made(cli: Cli, alice: None) -> None:
    cli("token", "--user", "alice")
    key = read_development_key(Path(f"{cli.database}.dev-key"))
    assert key is not None
    assert development_key(str(cli.database)) == (key, Path(f"{cli.database}.dev-key"))  # what serve calls


def test_a_development_key_readable_by_others_is_refused(cli: Cli, alice: None) -> None:
    cli("token", "--user", "alice")
    Path(f"{cli.database}.dev-key").chmod(0o644)
    result = cli("token", "--user", "alice")
    assert result.code == EXIT_CONFIG
    assert "readable by other users: chmod 600" in result.err


def test_token_without_an_api_key_for_a_free_name_is_a_demo_token(cli: Cli) -> None:
    result = cli("token", "--user", "visitor", "--format", "details")
    assert result.code == EXIT_OK, result.err
    assert json.loads(result.out)["clientId"] == "visitor"
    assert "no account 'visitor': a demo-login token (role demo)" in result.err


def test_token_without_an_api_key_and_demo_login_off_needs_an_account(cli: Cli) -> None:
    cli.environ["AUTHSERVER_DEMO_LOGIN"] = "false"
    result = cli("token", "--user", "visitor")
    assert (result.code, result.err.splitlines()[-1]) == (EXIT_ERROR, "authserver: no such user: 'visitor'")


def test_token_with_a_key_needs_no_session_secret(cli: Cli, alice: None) -> None:
    cli.environ["ABLY_API_KEY"] = API_KEY  # and no SESSION_SECRET: token signs no cookie
    result = cli("token", "--user", "alice", "--format", "jwt")
    assert result.code == EXIT_OK, result.err
    assert _verified_claims(result.out.strip())["x-ably-clientId"] == "alice"
    assert result.err == database_line(cli)


# --- ports: a busy port names the server it was for and the setting that moves it ----------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_sandbox_with_a_key_needs_no_session_secret_and_names_its_busy_port(cli: Cli, busy_port: int) -> None:
    cli.environ["ABLY_API_KEY"] = API_KEY
    result = cli("sandbox", "--port", str(busy_port))
    assert result.code == EXIT_CONFIG
    assert f"cannot listen on 127.0.0.1:{busy_port} for the Ably sandbox" in result.err
    assert "--port or AUTHSERVER_SANDBOX_PORT" in result.err
    assert "SESSION_SECRET" not in result.err


def test_serve_names_the_embedded_sandbox_when_its_port_is_busy(cli: Cli, busy_port: int) -> None:
    cli.environ["AUTHSERVER_SANDBOX_PORT"] = str(busy_port)
    result = cli("serve", "--port", "0")
    assert result.code == EXIT_CONFIG
    assert f"cannot listen on 127.0.0.1:{busy_port} for the embedded Ably sandbox" in result.err
    assert "AUTHSERVER_SANDBOX_PORT" in result.err


def test_serve_names_the_token_service_when_its_port_is_busy(cli: Cli, busy_port: int) -> None:
    cli.environ["AUTHSERVER_SANDBOX_PORT"] = "0"  # the sandbox binds anywhere; the service cannot
    result = cli("serve", "--port", str(busy_port))
    assert result.code == EXIT_CONFIG
    assert f"cannot listen on 127.0.0.1:{busy_port} for the token service" in result.err
    assert "--port or AUTHSERVER_PORT" in result.err


def test_a_second_serve_names_the_service_port_not_the_sandbox_port_nor_the_configuration(
    cli: Cli, busy_port: int
) -> None:
    with socket.socket() as sandbox_holder:  # what a first serve holds: both of its ports
        sandbox_holder.bind(("127.0.0.1", 0))
        sandbox_holder.listen()
        cli.environ["AUTHSERVER_SANDBOX_PORT"] = str(sandbox_holder.getsockname()[1])
        result = cli("serve", "--port", str(busy_port))
    assert result.code == EXIT_CONFIG
    last = result.err.splitlines()[-1]
    assert last.startswith(f"authserver: cannot listen on 127.0.0.1:{busy_port} for the token service: ")
    assert "is another authserver running there?" in last
    assert "sandbox" not in result.err and "invalid configuration" not in result.err


def test_serve_refuses_a_port_that_is_also_the_sandbox_port(cli: Cli) -> None:
    cli.environ["AUTHSERVER_SANDBOX_PORT"] = "9999"
    result = cli("serve", "--port", "9999")
    assert result.code == EXIT_CONFIG
    assert "AUTHSERVER_SANDBOX_PORT: 9999 is the token service's port too" in result.err


# --- check ----------------------------------------------------------------------------------------


def test_check_in_development_without_other_settings_is_ok_with_a_demo_warning(cli: Cli) -> None:
    result = cli("check")
    assert result.code == EXIT_OK
    lines = result.out.splitlines()
    assert lines[0].startswith("configuration OK: development")
    assert "  listens on: http://127.0.0.1:8000 (--port or AUTHSERVER_PORT)" in lines
    assert "  Ably: an embedded sandbox on http://127.0.0.1:8001 (the next port)" in lines  # what serve will use
    secret = (
        f"  session secret: the development one, kept in {cli.database}.dev-session-secret beside the development key"
    )
    assert any(line.startswith(secret) for line in lines)
    assert "  WARNING: demo login is ON: any username and password logs in. NOT FOR PRODUCTION." in lines
    assert result.err == ""


@pytest.mark.parametrize(
    ("argv", "env", "service", "sandbox"),
    [
        (["--port", "9000"], {}, "9000 (--port or AUTHSERVER_PORT)", "9001 (the next port)"),
        ([], {"AUTHSERVER_PORT": "9100"}, "9100 (--port or AUTHSERVER_PORT)", "9101 (the next port)"),
        (["--port", "9000"], {"AUTHSERVER_SANDBOX_PORT": "7000"}, "9000", "7000 (AUTHSERVER_SANDBOX_PORT)"),
        (["--port", "9000", "--host", "::1"], {}, "9000", "9001"),
    ],
)
def test_check_shows_the_ports_serve_would_use_with_the_same_options(
    cli: Cli, argv: list[str], env: dict[str, str], service: str, sandbox: str
) -> None:
    cli.environ.update(env)
    lines = cli("check", *argv).out.splitlines()
    host = "[::1]" if "--host" in argv else "127.0.0.1"
    assert any(line.startswith(f"  listens on: http://{host}:{service}") for line in lines), lines
    assert any(line.startswith(f"  Ably: an embedded sandbox on http://{host}:{sandbox}") for line in lines), lines


def test_check_dev_is_serve_dev(cli: Cli) -> None:
    cli.environ.pop("AUTHSERVER_ENV")
    assert cli("check").code == EXIT_CONFIG  # no key, and development not asked for
    result = cli("check", "--dev")
    assert result.code == EXIT_OK, result.err
    assert result.out.startswith("configuration OK: development")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ABLY_ENDPOINT", "http://127.0.0.1:8001", "ABLY_ENDPOINT: set ABLY_API_KEY"),
        ("DATABASE_URL", "sqlite:////nonexistent-dir/x.db", "DATABASE_URL: the directory"),
    ],
)
def test_check_refuses_what_serve_would_refuse(cli: Cli, name: str, value: str, message: str) -> None:
    cli.environ[name] = value
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


def test_check_warns_when_demo_login_is_on_in_production(cli: Cli, production: None) -> None:
    cli.environ["AUTHSERVER_DEMO_LOGIN"] = "true"
    result = cli("check")
    assert result.code == EXIT_OK
    assert "WARNING: demo login is ON" in result.out


def test_check_with_a_bad_setting_fails_naming_it(cli: Cli) -> None:
    cli.environ["AUTHSERVER_PORT"] = "eighty"
    result = cli("check")
    assert result.code == EXIT_CONFIG
    assert "  - AUTHSERVER_PORT: 'eighty' is not a whole number\n" in result.err
    assert result.out == ""


def test_check_reports_every_bad_setting_without_secrets(cli: Cli) -> None:
    cli.environ["ABLY_API_KEY"] = f"appId.keyId:{KEY_SECRET}:extra"
    cli.environ["SESSION_SECRET"] = "short-SESSION-secret"
    cli.environ["TOKEN_TTL"] = "1"
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


def test_check_says_where_the_settings_come_from_and_which_database_it_opens(cli: Cli, tmp_path: Path) -> None:
    lines = cli("check").out.splitlines()
    assert f"  settings: the environment only (no .env in {tmp_path}, no AUTHSERVER_ENV_FILE)" in lines
    assert f"  database: {cli.database} (not there yet: created on first use)" in lines
    assert not cli.database.exists()  # check creates nothing
    (tmp_path / ".env").write_text("TOKEN_TTL=600\n", encoding="utf-8")
    lines = cli("check").out.splitlines()
    assert f"  settings: {tmp_path / '.env'} and the environment (the environment wins)" in lines


def test_check_follows_authserver_env_file_from_another_directory(cli: Cli, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text("DATABASE_URL=sqlite:///accounts.db\n", encoding="utf-8")
    del cli.environ["DATABASE_URL"]
    cli.environ["AUTHSERVER_ENV_FILE"] = str(project / ".env")
    lines = cli("check").out.splitlines()
    assert f"  settings: {project / '.env'} and the environment (the environment wins)" in lines
    assert f"  database: {project / 'accounts.db'} (not there yet: created on first use)" in lines


def test_check_opens_the_database_and_counts_its_accounts(cli: Cli, alice: None) -> None:
    result = cli("check")
    assert result.code == EXIT_OK
    assert f"  database: {cli.database} (1 account(s), schema version {SCHEMA_VERSION})" in result.out.splitlines()


def test_check_fails_for_a_file_that_is_not_a_database(cli: Cli) -> None:
    cli.database.write_text("this is not a database\n" * 100, encoding="utf-8")
    result = cli("check")
    assert result.code == EXIT_CONFIG
    assert result.err.startswith("authserver: invalid configuration:\n  - DATABASE_URL: cannot open database ")
    assert "file is not a database" in result.err
    assert result.out == ""


def test_every_command_stops_with_exit_3_on_a_file_that_is_not_a_database(cli: Cli) -> None:
    cli.database.write_text("this is not a database\n" * 100, encoding="utf-8")
    result = cli("users", "list")
    assert result.code == EXIT_CONFIG
    assert "file is not a database" in result.err


def test_check_reports_accounts_whose_role_the_policy_no_longer_has(cli: Cli, tmp_path: Path) -> None:
    store = cli.store()
    store.add("alice", PASSWORD, role="admin", client_id=None, now=NOW)
    store.add("bob", PASSWORD, role="user", client_id=None, now=NOW)
    policy = tmp_path / "policy.toml"
    policy.write_text('[roles.user.capability]\n"chat:*" = ["subscribe"]\n', encoding="utf-8")
    cli.environ["AUTHSERVER_POLICY"] = str(policy)
    result = cli("check")
    assert result.code == EXIT_CONFIG
    assert "1 account(s) have a role the policy" in result.err
    assert "alice (role 'admin')" in result.err and "bob" not in result.err
    assert "authserver users set-role NAME ROLE" in result.err


def test_check_names_the_development_key_serve_and_token_share(cli: Cli, alice: None) -> None:
    key_file = Path(f"{cli.database}.dev-key")
    assert f"made by the first `serve` or `token` and kept in {key_file}" in cli("check").out
    assert not key_file.exists()
    cli("token", "--user", "alice")
    key = read_development_key(key_file)
    assert key is not None
    assert f"  signing key: the development key {key.name}, kept in {key_file}" in cli("check").out


def _fake_ably_js(directory: Path) -> Path:
    (directory / "build").mkdir(parents=True)
    (directory / "build" / "ably.min.js").write_text("/* ably */", encoding="utf-8")
    return directory


@pytest.mark.parametrize(
    ("ably_js", "installed", "says"),
    [
        (None, True, "ably-js for the page: the local npm copy in "),
        # No copy: the CDN, which needs internet; a warning, as serve logs it.
        (None, False, "WARNING: ably-js for the page: Ably's CDN, since there is no local copy in "),
        ("cdn", True, "ably-js for the page: Ably's CDN, as ABLY_JS=cdn asks"),
    ],
)
def test_check_says_where_the_page_loads_ably_js_from(
    cli: Cli, tmp_path: Path, ably_js: str | None, installed: bool, says: str
) -> None:
    path = _fake_ably_js(tmp_path / "ably") if installed else tmp_path / "absent"
    cli.environ["ABLY_JS_PATH"] = str(path)
    if ably_js:
        cli.environ["ABLY_JS"] = ably_js
    assert f"\n  {says}" in cli("check").out


def test_check_flags_a_local_ably_js_that_is_missing_as_a_warning(cli: Cli, tmp_path: Path) -> None:
    # ABLY_JS=local with no copy: the page cannot load ably-js and "Log in" stays disabled, so check
    # says it as loudly as serve logs it (a WARNING), not as an ordinary line of an OK report.
    cli.environ["ABLY_JS_PATH"] = str(tmp_path / "absent")
    cli.environ["ABLY_JS"] = "local"
    assert "  WARNING: ably-js for the page: ABLY_JS=local, but there is no ably-js in " in cli("check").out


def test_check_warns_that_short_token_ttls_renew_by_reconnecting_on_real_ably(cli: Cli) -> None:
    cli.environ["TOKEN_TTL"] = "10"
    result = cli("check")
    assert result.code == EXIT_OK  # a warning, not an error
    warning = next(line for line in result.out.splitlines() if line.startswith("  WARNING: TOKEN_TTL=10s"))
    assert "40142" in warning and "ably-python" in warning


def test_check_with_a_key_and_no_session_secret_fails_as_serve_would(cli: Cli) -> None:
    cli.environ["ABLY_API_KEY"] = API_KEY
    result = cli("check")
    assert result.code == EXIT_CONFIG
    assert "SESSION_SECRET: required when ABLY_API_KEY is set" in result.err


def test_a_bad_setting_stops_every_command_with_exit_3(cli: Cli) -> None:
    cli.environ["TOKEN_TTL"] = "soon"
    result = cli("users", "list")
    assert result.code == EXIT_CONFIG
    assert "TOKEN_TTL" in result.err


def test_missing_subcommand_is_a_usage_error(cli: Cli) -> None:
    with pytest.raises(SystemExit) as exc_info:
        main([])
    assert exc_info.value.code == 2


def test_check_refuses_a_database_with_a_newer_schema(cli: Cli, alice: None) -> None:
    import sqlite3

    with sqlite3.connect(cli.database) as db:
        db.execute("UPDATE schema_version SET version = 7")
    db.close()
    result = cli("check")
    assert result.code == EXIT_CONFIG
    assert f"has schema version 7, which this authserver (schema {SCHEMA_VERSION}) does not know" in result.err
    assert "users" not in result.out


def test_db_upgrade_and_status_on_sqlite(cli: Cli) -> None:
    # a SQLite file gets the current schema as soon as it is opened (created on first use)
    assert cli("db", "upgrade") == Result(
        EXIT_OK, f"{cli.database}: already at schema version {SCHEMA_VERSION}\n", database_line(cli, new=True)
    )
    assert cli("db", "status") == Result(
        EXIT_OK,
        f"{cli.database}: schema version {SCHEMA_VERSION}; this authserver uses schema version {SCHEMA_VERSION}\n",
        database_line(cli),
    )


def test_check_warns_when_metrics_are_open_on_a_non_loopback_address(cli: Cli, production: None) -> None:
    cli.environ["AUTHSERVER_HOST"] = "192.0.2.1"
    result = cli("check")
    assert result.code == EXIT_OK
    assert "  WARNING: /metrics is open to anyone who reaches 192.0.2.1" in result.out
    assert "  metrics: GET /metrics open (no AUTHSERVER_METRICS_TOKEN)" in result.out.splitlines()


def test_check_with_a_metrics_token_says_so_and_never_prints_it(cli: Cli, production: None) -> None:
    token = "metrics-scrape-token-0123456789-abcdef"
    cli.environ.update(AUTHSERVER_HOST="192.0.2.1", AUTHSERVER_METRICS_TOKEN=token)
    result = cli("check")
    assert result.code == EXIT_OK
    assert "  metrics: GET /metrics wants Authorization: Bearer <AUTHSERVER_METRICS_TOKEN>" in result.out.splitlines()
    assert "WARNING" not in result.out
    assert token not in result.out + result.err


def test_serve_logs_the_open_metrics_warning_at_start_up(cli: Cli, production: None) -> None:
    # The warning comes before the port is bound; the address (TEST-NET-1) is not this machine's: serve stops there.
    result = cli("serve", "--host", "192.0.2.1", "--port", "0")
    assert result.code == EXIT_CONFIG
    assert "/metrics is open to anyone who reaches 192.0.2.1" in result.err


# --- db backup / restore --------------------------------------------------------------------------


def test_a_backup_restored_brings_the_accounts_back_as_they_were(cli: Cli, alice: None, tmp_path: Path) -> None:
    backup = tmp_path / "backups" / "authserver-1.db"
    backup.parent.mkdir()
    result = cli("db", "backup", str(backup))
    assert result == Result(
        EXIT_OK, f"backed up {cli.database} to {backup} (schema version {SCHEMA_VERSION})\n", database_line(cli)
    )
    assert sorted(p.name for p in backup.parent.iterdir()) == ["authserver-1.db"]  # one file, no -wal, no partial

    # After the backup: bob arrives, alice leaves.
    cli("users", "add", "bob", stdin=f"{PASSWORD}\n")
    cli("users", "remove", "alice")
    assert user_lines(cli) == ["bob\tclientId=bob\trole=user\tactive"]

    restored = cli("db", "restore", str(backup))
    assert restored.code == EXIT_OK, restored.err
    assert restored.out == f"restored {cli.database} from {backup} (schema version {SCHEMA_VERSION})\n"
    assert user_lines(cli) == ["alice\tclientId=alice\trole=user\tactive"]
    assert cli.store().verify_login("alice", PASSWORD).subject == "alice"  # the password hash came back too
    kept = restored.err.splitlines()[-1].removeprefix("authserver: the database as it was before is kept in ")
    assert Path(kept).parent == cli.database.parent and Path(kept).name.startswith("users.db.before-restore-")
    with sqlite3.connect(kept) as before:
        assert [row[0] for row in before.execute("SELECT username FROM users")] == ["bob"]


def test_a_backup_is_consistent_while_another_connection_is_writing(cli: Cli, alice: None, tmp_path: Path) -> None:
    writer = sqlite3.connect(cli.database, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE users SET role = 'admin' WHERE username = 'alice'")  # not committed
        assert cli("db", "backup", str(tmp_path / "b.db")).code == EXIT_OK  # no wait for the writer
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    with sqlite3.connect(tmp_path / "b.db") as copy:
        assert copy.execute("SELECT role FROM users").fetchall() == [("user",)]
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_backup_never_overwrites_a_file_and_needs_a_database(cli: Cli, tmp_path: Path) -> None:
    missing = cli("db", "backup", str(tmp_path / "b.db"))
    assert missing.code == EXIT_CONFIG and "no database at" in missing.err
    assert not cli.database.exists()
    cli("users", "add", "alice", stdin=f"{PASSWORD}\n")
    (tmp_path / "b.db").write_text("precious")
    refused = cli("db", "backup", str(tmp_path / "b.db"))
    assert refused.code == EXIT_ERROR and "exists already: a backup never overwrites a file" in refused.err
    assert (tmp_path / "b.db").read_text() == "precious"


def test_restore_refuses_a_file_that_is_not_an_authserver_backup(cli: Cli, alice: None, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    result = cli("db", "restore", str(other))
    assert result.code == EXIT_CONFIG and "is not an authserver database" in result.err
    assert user_lines(cli) == ["alice\tclientId=alice\trole=user\tactive"]  # the database untouched
    assert not list(cli.database.parent.glob("users.db.before-restore-*"))  # nothing changed, nothing kept
    assert cli("db", "restore", str(tmp_path / "nothing.db")).err.endswith(f"no backup at {tmp_path}/nothing.db\n")


def test_backup_of_postgresql_points_to_pg_dump(cli: Cli) -> None:
    cli.environ["DATABASE_URL"] = "postgresql://authserver:secret-pw@127.0.0.1:9/authserver"
    result = cli("db", "backup", "x.dump")
    assert result.code == EXIT_ERROR
    assert "pg_dump --format=custom" in result.err and "secret-pw" not in result.err
