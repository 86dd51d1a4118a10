"""Settings from a plain dict (never ``os.environ``) and an optional ``.env`` file.

Every problem is reported at once, naming the setting and never repeating a secret.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from authserver.config import (
    DEFAULT_DATABASE_URL,
    DEFAULT_MAX_IN_FLIGHT,
    HARD_MAX_TOKEN_TTL,
    REPO_ROOT,
    SETTINGS_HELP,
    Settings,
    load_settings,
    open_metrics_warning,
    short_ttl_warning,
    short_ttl_warnings,
)
from authserver.core.keys import AblyKey
from authserver.errors import ConfigError

KEY_SECRET = "KEY-SECRET-0123456789-abcdefghijklmnop"
API_KEY = f"appId.keyId:{KEY_SECRET}"
SESSION_SECRET = "SESSION-SECRET-0123456789-abcdefghij"
PRODUCTION = {"ABLY_API_KEY": API_KEY, "SESSION_SECRET": SESSION_SECRET}

#: Development mode, asked for by name, as a checkout runs (a key, when given, makes it production).
DEVELOPMENT = {"AUTHSERVER_ENV": "development"}


def load(environ: dict[str, str], *, need_session_secret: bool = True) -> Settings:
    """Settings from ``environ`` (no .env file) in a checkout that asks for development mode."""
    return load_settings({**DEVELOPMENT, **environ}, env_file=None, need_session_secret=need_session_secret)


def problems_of(environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as exc_info:
        load(environ)
    return exc_info.value.problems


# --- development mode, asked for by name, with no other setting --------------------------------------


def test_no_settings_at_all_is_development_mode_with_defaults() -> None:
    settings = load({})
    assert settings.development is True
    assert settings.ably_keys == ()
    assert settings.demo_login is True
    assert settings.session_secret_ephemeral is True
    assert len(settings.session_secret) >= 32
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.sandbox_port == 8001
    assert settings.token_ttl == 3600
    assert settings.token_max_ttl == HARD_MAX_TOKEN_TTL == 86400
    assert settings.session_ttl == 28800
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.policy_source == "built-in"
    assert set(settings.policy.roles) == {"user", "demo", "admin"}
    assert settings.ably_endpoint is None
    assert settings.key_capability is None
    assert settings.cookie_secure == "auto"
    assert settings.allowed_origins == ()
    assert settings.log_level == "info"
    assert settings.env_file is None


def test_ephemeral_session_secret_is_new_each_time() -> None:
    assert load({}).session_secret != load({}).session_secret


def test_empty_values_count_as_unset() -> None:
    # env.example ships ``ABLY_API_KEY=`` and ``SESSION_SECRET=`` blank.
    settings = load({"ABLY_API_KEY": "", "SESSION_SECRET": "  ", "TOKEN_TTL": "", "AUTHSERVER_PORT": ""})
    assert settings.development is True
    assert (settings.token_ttl, settings.port) == (3600, 8000)


def test_shipped_env_example_is_valid_once_a_mode_is_chosen() -> None:
    with pytest.raises(ConfigError, match="ABLY_API_KEY: not set"):
        load_settings({}, env_file=REPO_ROOT / "env.example")
    settings = load_settings(DEVELOPMENT, env_file=REPO_ROOT / "env.example")
    assert settings.development is True
    assert settings.misspelled == ()


# --- production mode ------------------------------------------------------------------------------


def test_api_key_switches_to_production_mode() -> None:
    settings = load(PRODUCTION)
    assert settings.development is False
    assert [key.name for key in settings.ably_keys] == ["appId.keyId"]
    assert settings.ably_keys[0].secret == KEY_SECRET
    assert settings.session_secret == SESSION_SECRET
    assert settings.session_secret_ephemeral is False


def test_demo_login_is_off_in_production_unless_asked() -> None:
    assert load(PRODUCTION).demo_login is False
    assert load({**PRODUCTION, "AUTHSERVER_DEMO_LOGIN": "true"}).demo_login is True


def test_demo_login_can_be_turned_off_in_development() -> None:
    assert load({"AUTHSERVER_DEMO_LOGIN": "false"}).demo_login is False


def test_production_requires_a_session_secret() -> None:
    assert problems_of({"ABLY_API_KEY": API_KEY}) == [
        "SESSION_SECRET: required when ABLY_API_KEY is set (at least 32 characters)"
    ]


def test_several_api_keys_are_read_for_rotation_and_the_first_signs() -> None:
    settings = load({**PRODUCTION, "ABLY_API_KEY": f"new.key:{KEY_SECRET}1,old.key:{KEY_SECRET}2"})
    assert [key.name for key in settings.ably_keys] == ["new.key", "old.key"]


def test_session_secret_must_be_at_least_32_characters_in_any_mode() -> None:
    expected = ["SESSION_SECRET: too short (at least 32 characters)"]
    assert problems_of({"SESSION_SECRET": "x" * 31}) == expected
    assert problems_of({**PRODUCTION, "SESSION_SECRET": "x" * 31}) == expected
    assert load({"SESSION_SECRET": "x" * 32}).session_secret == "x" * 32


def test_a_metrics_token_must_be_at_least_32_characters_and_stays_out_of_the_repr() -> None:
    assert problems_of({"AUTHSERVER_METRICS_TOKEN": "m" * 31}) == [
        "AUTHSERVER_METRICS_TOKEN: too short (at least 32 characters)"
    ]
    settings = load({"AUTHSERVER_METRICS_TOKEN": "m" * 32})
    assert settings.metrics_token == "m" * 32
    assert "m" * 32 not in repr(settings)
    assert load({}).metrics_token is None


@pytest.mark.parametrize(
    ("host", "token", "warned"),
    [
        ("127.0.0.1", None, False),
        ("127.0.0.2", None, False),
        ("::1", None, False),
        ("localhost", None, False),
        ("0.0.0.0", None, True),  # noqa: S104 - a value, not a bind
        ("::", None, True),
        ("10.1.2.3", None, True),
        ("auth.internal", None, True),  # a name may resolve to anything
        ("0.0.0.0", "m" * 32, False),  # noqa: S104 - a value, not a bind
    ],
)
def test_open_metrics_are_a_warning_only_off_loopback(host: str, token: str | None, warned: bool) -> None:
    environ = {"AUTHSERVER_HOST": host} | ({"AUTHSERVER_METRICS_TOKEN": token} if token else {})
    warning = open_metrics_warning(load(environ), host)
    assert (warning is not None) == warned
    if warning:
        assert host in warning and "AUTHSERVER_METRICS_TOKEN" in warning


# --- one ConfigError with every problem, and no secret in it --------------------------------------


def test_every_problem_is_reported_at_once_without_secret_values() -> None:
    leaked_key_secret = "LEAKY-KEY-SECRET-42"
    leaked_session_secret = "LEAKY-SESSION-42"
    environ = {
        "ABLY_API_KEY": f"appId.keyId:{leaked_key_secret}:oops",  # two colons
        "SESSION_SECRET": leaked_session_secret,  # too short
        "AUTHSERVER_PORT": "eighty",
        "TOKEN_TTL": "4",
        "ABLY_ENDPOINT": "ftp://sandbox",
        "DATABASE_URL": f"mysql://u:{leaked_session_secret}@db/auth",  # not an engine we speak
        "AUTHSERVER_LOG_LEVEL": "loud",
        "ABLY_KEY_CAPABILITY": "{not json",
    }
    with pytest.raises(ConfigError) as exc_info:
        load(environ)
    error = exc_info.value
    assert len(error.problems) == len(environ)
    for name in environ:
        assert sum(problem.startswith(name) for problem in error.problems) == 1, name
    for text in (str(error), error.message, repr(error), *error.problems):
        assert leaked_key_secret not in text
        assert leaked_session_secret not in text
    assert error.message.startswith("invalid configuration:\n")
    assert all(f"  - {problem}" in error.message for problem in error.problems)


# --- each setting's bad values --------------------------------------------------------------------


ENDPOINT_EXTRA = "ABLY_ENDPOINT: must be just scheme://host[:port], without a path, query or user name"


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"AUTHSERVER_PORT": "eighty"}, "AUTHSERVER_PORT: 'eighty' is not a whole number"),
        ({"AUTHSERVER_PORT": "80.5"}, "AUTHSERVER_PORT: '80.5' is not a whole number"),
        ({"AUTHSERVER_PORT": "-1"}, "AUTHSERVER_PORT: -1 is outside 0..65535"),
        ({"AUTHSERVER_PORT": "65536"}, "AUTHSERVER_PORT: 65536 is outside 0..65535"),
        ({"AUTHSERVER_SANDBOX_PORT": "70000"}, "AUTHSERVER_SANDBOX_PORT: 70000 is outside 0..65535"),
        (
            {"AUTHSERVER_PORT": "9000", "AUTHSERVER_SANDBOX_PORT": "9000"},
            "AUTHSERVER_SANDBOX_PORT: must differ from AUTHSERVER_PORT",
        ),
        ({"TOKEN_TTL": "4"}, "TOKEN_TTL: 4 is outside 5..86400"),
        ({"TOKEN_TTL": "0"}, "TOKEN_TTL: 0 is outside 5..86400"),
        ({"TOKEN_TTL": "86401"}, "TOKEN_TTL: 86401 is outside 5..86400"),
        ({"TOKEN_TTL": "1h"}, "TOKEN_TTL: '1h' is not a whole number"),
        ({"TOKEN_TTL": "true"}, "TOKEN_TTL: 'true' is not a whole number"),
        ({"TOKEN_TTL": "7200", "TOKEN_MAX_TTL": "3600"}, "TOKEN_TTL: 7200 is longer than TOKEN_MAX_TTL (3600)"),
        ({"TOKEN_MAX_TTL": "86401"}, "TOKEN_MAX_TTL: 86401 is outside 5..86400"),
        ({"TOKEN_MAX_TTL": "4"}, "TOKEN_MAX_TTL: 4 is outside 5..86400"),
        ({"TOKEN_MAX_TTL": "a day"}, "TOKEN_MAX_TTL: 'a day' is not a whole number"),
        ({"AUTHSERVER_SESSION_TTL": "59"}, "AUTHSERVER_SESSION_TTL: 59 is outside 60..2592000"),
        ({"AUTHSERVER_DEMO_LOGIN": "maybe"}, "AUTHSERVER_DEMO_LOGIN: 'maybe' is not true or false"),
        ({"AUTHSERVER_DEMO_LOGIN": "2"}, "AUTHSERVER_DEMO_LOGIN: '2' is not true or false"),
        ({"ABLY_ENDPOINT": "ftp://sandbox"}, "ABLY_ENDPOINT: must be an http(s)://host[:port] URL"),
        ({"ABLY_ENDPOINT": "127.0.0.1:8001"}, "ABLY_ENDPOINT: must be an http(s)://host[:port] URL"),
        ({"ABLY_ENDPOINT": "http://"}, "ABLY_ENDPOINT: must be an http(s)://host[:port] URL"),
        ({"ABLY_ENDPOINT": "http://h:99999"}, "ABLY_ENDPOINT: has an invalid port"),
        ({"ABLY_ENDPOINT": "http://h:port"}, "ABLY_ENDPOINT: has an invalid port"),
        (
            {"ABLY_ENDPOINT": "http://h/v1"},
            ENDPOINT_EXTRA,
        ),
        (
            {"ABLY_ENDPOINT": "http://h?x=1"},
            ENDPOINT_EXTRA,
        ),
        (
            {"ABLY_ENDPOINT": "http://h#x"},
            ENDPOINT_EXTRA,
        ),
        (
            {"ABLY_ENDPOINT": "http://u@h"},
            ENDPOINT_EXTRA,
        ),
        (
            {"DATABASE_URL": "mysql://u:hunter2@db/auth"},
            "DATABASE_URL must be sqlite:///path/to/file.db or postgresql://user:password@host:port/database",
        ),
        (
            {"DATABASE_URL": "postgresql://u:hunter2@db:99999/auth"},
            "DATABASE_URL: the PostgreSQL URL has an invalid port",
        ),
        (
            {"DATABASE_URL": "postgresql://u:hunter2@db/"},
            "DATABASE_URL: the PostgreSQL URL names no database (postgresql://user@host:port/NAME)",
        ),
        (
            {"DATABASE_URL": "sqlite://auth.db"},
            "DATABASE_URL must start with 'sqlite:///' for SQLite",
        ),
        ({"DATABASE_URL": "sqlite:///"}, "DATABASE_URL has no file path after sqlite:///"),
        ({"ABLY_JS": "npm"}, "ABLY_JS: 'npm' is not one of cdn, local"),
        ({"AUTHSERVER_COOKIE_SECURE": "always"}, "AUTHSERVER_COOKIE_SECURE: 'always' is not one of auto, true, false"),
        ({"AUTHSERVER_COOKIE_SECURE": "1"}, "AUTHSERVER_COOKIE_SECURE: '1' is not one of auto, true, false"),
        (
            {"AUTHSERVER_ALLOWED_ORIGINS": "example.com"},
            "AUTHSERVER_ALLOWED_ORIGINS: each origin must look like https://example.com (scheme and host only)",
        ),
        (
            {"AUTHSERVER_ALLOWED_ORIGINS": "https://ok.example, https://a.example/login"},
            "AUTHSERVER_ALLOWED_ORIGINS: each origin must look like https://example.com (scheme and host only)",
        ),
        (
            {"AUTHSERVER_ALLOWED_ORIGINS": "ftp://files.example"},
            "AUTHSERVER_ALLOWED_ORIGINS: each origin must look like https://example.com (scheme and host only)",
        ),
        (
            {"AUTHSERVER_LOG_LEVEL": "verbose"},
            "AUTHSERVER_LOG_LEVEL: 'verbose' is not one of debug, info, warning, error",
        ),
        ({"ABLY_KEY_CAPABILITY": "{not json"}, "ABLY_KEY_CAPABILITY: capability is not valid JSON"),
        ({"AUTHSERVER_MAX_IN_FLIGHT": "-1"}, "AUTHSERVER_MAX_IN_FLIGHT: -1 is outside 0..100000"),
        ({"ABLY_KEY_CAPABILITY": "[]"}, "ABLY_KEY_CAPABILITY: capability must be a JSON object"),
        (
            {"ABLY_KEY_CAPABILITY": '{"chat:*":["fly"]}'},
            'ABLY_KEY_CAPABILITY: capability for "chat:*" lists unknown operation "fly"',
        ),
        ({"ABLY_API_KEY": "appId.keyId"}, "ABLY_API_KEY: API key has no ':' separating the key name from the secret"),
        (
            {"ABLY_API_KEY": f"a.b:{KEY_SECRET},a.b:{KEY_SECRET}", "SESSION_SECRET": SESSION_SECRET},
            "ABLY_API_KEY: API key #2 repeats key name 'a.b'",
        ),
    ],
)
def test_bad_value_is_reported_naming_the_setting(environ: dict[str, str], problem: str) -> None:
    assert problems_of(environ) == [problem]


def test_missing_policy_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    assert problems_of({"AUTHSERVER_POLICY": str(path)}) == [
        f"AUTHSERVER_POLICY: cannot read policy file {str(path)!r}: No such file or directory"
    ]


def test_invalid_policy_file_is_reported_naming_the_role(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[roles.user.capability]\n"chat:*" = ["fly"]\n', encoding="utf-8")
    assert problems_of({"AUTHSERVER_POLICY": str(path)}) == [
        'AUTHSERVER_POLICY: role \'user\': capability for "chat:*" lists unknown operation "fly"'
    ]


def test_a_policy_whose_jwts_could_exceed_8_kib_is_a_config_problem_naming_role_and_size(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    rooms = "".join(f'"room-{i}:{{clientId}}" = \'{{"email":"{{claim:email}}"}}\'\n' for i in range(4))
    path.write_text(
        f'[roles.user.capability]\n"chat:*" = ["publish"]\n[roles.user.channel_claims]\n{rooms}', encoding="utf-8"
    )
    [problem] = problems_of({"AUTHSERVER_POLICY": str(path)})
    assert problem.startswith("AUTHSERVER_POLICY: role 'user': its JWTs could be ")
    assert "bytes, over Ably's 8192-byte guidance" in problem


def test_default_sandbox_port_is_never_out_of_range() -> None:
    try:
        settings = load({"AUTHSERVER_PORT": "65535"})
    except ConfigError as exc:
        assert any(problem.startswith("AUTHSERVER_SANDBOX_PORT") for problem in exc.problems)
    else:
        assert 0 <= settings.sandbox_port <= 65535


# --- good values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "attribute", "value"),
    [
        ({"AUTHSERVER_HOST": "0.0.0.0"}, "host", "0.0.0.0"),  # noqa: S104 - a value, not a bind
        ({"AUTHSERVER_PORT": "9000"}, "sandbox_port", 9001),
        ({"AUTHSERVER_PORT": "0"}, "sandbox_port", 0),
        ({"AUTHSERVER_PORT": " 9000 "}, "port", 9000),
        ({"AUTHSERVER_PORT": "9000", "AUTHSERVER_SANDBOX_PORT": "9500"}, "sandbox_port", 9500),
        ({"TOKEN_TTL": "5"}, "token_ttl", 5),
        ({"TOKEN_TTL": "86400"}, "token_ttl", 86400),
        ({"TOKEN_MAX_TTL": "600"}, "token_ttl", 600),  # the default TTL never exceeds the maximum
        ({"TOKEN_MAX_TTL": "600"}, "token_max_ttl", 600),
        ({"AUTHSERVER_SESSION_TTL": "60"}, "session_ttl", 60),
        ({**PRODUCTION, "ABLY_ENDPOINT": "http://127.0.0.1:8001"}, "ably_endpoint", "http://127.0.0.1:8001"),
        ({**PRODUCTION, "ABLY_ENDPOINT": "https://sandbox.example/"}, "ably_endpoint", "https://sandbox.example"),
        ({**PRODUCTION, "ABLY_ENDPOINT": "http://[::1]:8001"}, "ably_endpoint", "http://[::1]:8001"),
        ({"DATABASE_URL": "sqlite:///:memory:"}, "database_path", ":memory:"),
        ({"DATABASE_URL": "postgresql://u:pw@db.example:5433/auth"}, "database_engine", "postgresql"),
        ({"DATABASE_URL": "postgres://db.example/auth"}, "database_path", ""),
        ({"DATABASE_URL": "sqlite:///auth.db"}, "database_path", str(Path.cwd() / "auth.db")),
        ({"DATABASE_URL": "sqlite:////var/lib/auth.db"}, "database_path", "/var/lib/auth.db"),
        ({"ABLY_JS": "LOCAL"}, "ably_js", "local"),
        ({"ABLY_JS_PATH": "/opt/ably"}, "ably_js_path", Path("/opt/ably")),
        ({"AUTHSERVER_COOKIE_SECURE": "True"}, "cookie_secure", "true"),
        ({"AUTHSERVER_COOKIE_SECURE": "false"}, "cookie_secure", "false"),
        (
            {"AUTHSERVER_ALLOWED_ORIGINS": "https://app.example, http://localhost:3000/ ,"},
            "allowed_origins",
            ("https://app.example", "http://localhost:3000"),
        ),
        ({"AUTHSERVER_LOG_LEVEL": "DEBUG"}, "log_level", "debug"),
        ({}, "max_in_flight", DEFAULT_MAX_IN_FLIGHT),  # on by default
        ({"AUTHSERVER_MAX_IN_FLIGHT": "128"}, "max_in_flight", 128),
        ({"AUTHSERVER_MAX_IN_FLIGHT": "0"}, "max_in_flight", 0),
        ({"AUTHSERVER_MAX_IN_FLIGHT": "512"}, "max_in_flight", 512),
    ],
)
def test_good_value_is_read(environ: dict[str, str], attribute: str, value: object) -> None:
    assert getattr(load(environ), attribute) == value


def test_key_capability_is_parsed_into_a_capability() -> None:
    capability = load({"ABLY_KEY_CAPABILITY": '{"chat:*": ["publish"]}'}).key_capability
    assert capability is not None
    assert capability.to_json() == '{"chat:*":["publish"]}'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True), ("true", True), ("YES", True), ("on", True),
        ("0", False), ("False", False), ("no", False), ("OFF", False),
    ],
)  # fmt: skip
def test_boolean_settings_accept_the_usual_spellings(value: str, expected: bool) -> None:
    assert load({"AUTHSERVER_DEMO_LOGIN": value}).demo_login is expected


def test_policy_file_is_loaded_and_named(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text('{"roles": {"user": {"capability": {"chat:*": ["subscribe"]}}}}', encoding="utf-8")
    settings = load({"AUTHSERVER_POLICY": str(path)})
    assert settings.policy_source == str(path)
    assert set(settings.policy.roles) == {"user"}


# --- the .env file --------------------------------------------------------------------------------


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / ".env"
    path.write_text(
        "# a comment\n"
        f"ABLY_API_KEY={API_KEY}\n"
        f"SESSION_SECRET='{SESSION_SECRET}'\n"
        "TOKEN_TTL=120\n"
        "AUTHSERVER_PORT=9000\n",
        encoding="utf-8",
    )
    return path


def test_env_file_values_are_read(env_file: Path) -> None:
    settings = load_settings(DEVELOPMENT, env_file=env_file)
    assert settings.development is False
    assert settings.ably_keys[0].name == "appId.keyId"
    assert settings.session_secret == SESSION_SECRET
    assert (settings.token_ttl, settings.port) == (120, 9000)


def test_environment_wins_over_env_file(env_file: Path) -> None:
    settings = load_settings({**DEVELOPMENT, "TOKEN_TTL": "300", "AUTHSERVER_PORT": "9100"}, env_file=env_file)
    assert (settings.token_ttl, settings.port, settings.sandbox_port) == (300, 9100, 9101)
    assert settings.session_secret == SESSION_SECRET  # still from the file


def test_missing_env_file_is_ignored(tmp_path: Path) -> None:
    assert load_settings(DEVELOPMENT, env_file=tmp_path / "absent.env").development is True


def test_env_file_problems_are_reported_like_environment_problems(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("TOKEN_TTL=soon\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc_info:
        load_settings(DEVELOPMENT, env_file=path)
    assert exc_info.value.problems == ["TOKEN_TTL: 'soon' is not a whole number"]


def test_env_file_is_not_copied_into_the_process_environment(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKEN_TTL", raising=False)
    load_settings(DEVELOPMENT, env_file=env_file)
    assert "TOKEN_TTL" not in os.environ


# --- secrets stay out of the repr -----------------------------------------------------------------


def test_repr_of_settings_shows_no_secret() -> None:
    settings = load(PRODUCTION)
    text = repr(settings)
    assert SESSION_SECRET not in text
    assert KEY_SECRET not in text
    assert "appId.keyId" in text  # the key name is not secret


def test_repr_of_development_settings_hides_the_ephemeral_secret() -> None:
    settings = load({})
    assert settings.session_secret not in repr(settings)


def test_every_setting_is_documented_in_env_example() -> None:
    text = (REPO_ROOT / "env.example").read_text(encoding="utf-8")
    for name in SETTINGS_HELP:
        assert f"{name}=" in text, name


def test_with_sandbox_points_settings_at_a_sandbox_key() -> None:
    key = AblyKey("dev.abc", "dev-secret")
    settings: Settings = load({"ABLY_KEY_CAPABILITY": '{"x":["publish"]}'}).with_sandbox(key, "http://127.0.0.1:1")
    assert settings.ably_keys == (key,)
    assert settings.ably_endpoint == "http://127.0.0.1:1"
    assert settings.key_capability is None


def test_endpoint_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {**DEVELOPMENT, "ABLY_ENDPOINT": "https://user:hunter2@sandbox.example/?key=a.b:S3CRET"}, env_file=None
        )
    assert "ABLY_ENDPOINT" in caught.value.message
    assert "hunter2" not in caught.value.message and "S3CRET" not in caught.value.message


def test_an_endpoint_without_a_key_is_refused_as_serve_would() -> None:
    with pytest.raises(ConfigError, match="ABLY_ENDPOINT: set ABLY_API_KEY"):
        load_settings({**DEVELOPMENT, "ABLY_ENDPOINT": "http://127.0.0.1:8001"}, env_file=None)


def test_a_database_in_a_missing_directory_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL: the directory"):
        load_settings({**DEVELOPMENT, "DATABASE_URL": "sqlite:////nonexistent-dir/x.db"}, env_file=None)


# --- where files are: relative to the .env file they were read from -------------------------------


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory with a .env; the command is started from another directory."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "policy.toml").write_text('[roles.user.capability]\n"chat:*" = ["subscribe"]\n', encoding="utf-8")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return project


def fake_ably_js(directory: Path) -> Path:
    (directory / "build").mkdir(parents=True)
    (directory / "build" / "ably.min.js").write_text("/* ably */", encoding="utf-8")
    return directory


def test_relative_paths_in_the_env_file_are_relative_to_the_env_file(elsewhere: Path) -> None:
    fake_ably_js(elsewhere / "vendor" / "ably")
    env = elsewhere / ".env"
    env.write_text(
        "DATABASE_URL=sqlite:///data/accounts.db\nAUTHSERVER_POLICY=policy.toml\nABLY_JS_PATH=vendor/ably\n",
        encoding="utf-8",
    )
    settings = load_settings(DEVELOPMENT, env_file=env)
    assert settings.env_file == env
    assert settings.database_path == str(elsewhere / "data" / "accounts.db")
    assert settings.policy_source == str(elsewhere / "policy.toml")
    assert set(settings.policy.roles) == {"user"}
    assert settings.ably_js_path == elsewhere / "vendor" / "ably"


def test_relative_paths_from_the_environment_are_relative_to_the_working_directory(elsewhere: Path) -> None:
    (elsewhere / ".env").write_text("DATABASE_URL=sqlite:///data/accounts.db\n", encoding="utf-8")
    settings = load_settings(
        {**DEVELOPMENT, "DATABASE_URL": "sqlite:///mine.db", "ABLY_JS_PATH": "ably"}, env_file=elsewhere / ".env"
    )
    assert settings.database_path == str(Path.cwd() / "mine.db")
    assert settings.ably_js_path == Path.cwd() / "ably"


def test_the_default_database_sits_beside_the_env_file(elsewhere: Path) -> None:
    (elsewhere / ".env").write_text("TOKEN_TTL=600\n", encoding="utf-8")
    assert load_settings(DEVELOPMENT, env_file=elsewhere / ".env").database_path == str(elsewhere / "authserver.db")


def test_without_an_env_file_the_default_database_is_in_the_working_directory(elsewhere: Path) -> None:
    settings = load_settings(DEVELOPMENT, env_file=elsewhere / "absent.env")
    assert settings.env_file is None
    assert settings.database_path == str(Path.cwd() / "authserver.db")


def test_authserver_env_file_names_the_env_file_to_read(elsewhere: Path) -> None:
    (elsewhere / "staging.env").write_text("TOKEN_TTL=600\n", encoding="utf-8")
    (Path.cwd() / ".env").write_text("TOKEN_TTL=900\n", encoding="utf-8")  # not read: the named file wins
    settings = load_settings({**DEVELOPMENT, "AUTHSERVER_ENV_FILE": str(elsewhere / "staging.env")})
    assert (settings.token_ttl, settings.env_file) == (600, elsewhere / "staging.env")
    assert settings.database_path == str(elsewhere / "authserver.db")


def test_a_missing_authserver_env_file_is_an_error_not_silently_development_mode(elsewhere: Path) -> None:
    assert problems_of({"AUTHSERVER_ENV_FILE": str(elsewhere / "nope.env")}) == [
        f"AUTHSERVER_ENV_FILE: no such file: {str(elsewhere / 'nope.env')!r}"
    ]


# --- ably-js for the page: the local npm copy whenever it is installed -----------------------------


def test_the_local_ably_js_is_used_when_it_is_installed(tmp_path: Path) -> None:
    settings = load({"ABLY_JS_PATH": str(fake_ably_js(tmp_path / "ably"))})
    assert (settings.ably_js, settings.ably_js_explicit) == ("local", False)


def test_the_cdn_is_used_when_no_local_ably_js_is_installed(tmp_path: Path) -> None:
    settings = load({"ABLY_JS_PATH": str(tmp_path / "absent")})
    assert (settings.ably_js, settings.ably_js_explicit) == ("cdn", False)


def test_ably_js_cdn_is_used_when_asked_even_with_a_local_copy(tmp_path: Path) -> None:
    settings = load({"ABLY_JS": "cdn", "ABLY_JS_PATH": str(fake_ably_js(tmp_path / "ably"))})
    assert (settings.ably_js, settings.ably_js_explicit) == ("cdn", True)


def test_the_checkout_default_ably_js_path_is_used_when_unset() -> None:
    settings = load({})
    assert settings.ably_js_path == REPO_ROOT / ".cache" / "node" / "node_modules" / "ably"
    installed = (settings.ably_js_path / "build" / "ably.min.js").is_file()
    assert settings.ably_js == ("local" if installed else "cdn")


# --- serve --port moves the sandbox with it -------------------------------------------------------


def test_a_new_service_port_moves_the_sandbox_to_the_next_port() -> None:
    settings = load({}).with_port(32213)
    assert (settings.port, settings.sandbox_port) == (32213, 32214)
    assert load({}).with_port(0).sandbox_port == 0  # any free port for both


def test_an_explicit_sandbox_port_stays_when_the_service_moves() -> None:
    settings = load({"AUTHSERVER_SANDBOX_PORT": "9999"}).with_port(32213)
    assert (settings.port, settings.sandbox_port) == (32213, 9999)


# --- commands that sign no cookie need no SESSION_SECRET ------------------------------------------


def test_a_key_without_session_secret_is_enough_for_commands_that_sign_no_cookie() -> None:
    settings = load({"ABLY_API_KEY": API_KEY}, need_session_secret=False)
    assert settings.development is False
    assert settings.ably_keys[0].name == "appId.keyId"


# --- short token lifetimes behave differently on real Ably ----------------------------------------


@pytest.mark.parametrize("ttl", [5, 30, 34])
def test_a_token_ttl_under_35_seconds_gets_a_warning_about_ably_renewal(ttl: int) -> None:
    warning = short_ttl_warning(ttl)
    assert warning is not None
    assert f"TOKEN_TTL={ttl}s" in warning
    assert "AUTH" in warning and "30s before" in warning and "40142" in warning and "ably-python" in warning


@pytest.mark.parametrize("ttl", [35, 60, 3600])
def test_a_token_ttl_of_35_seconds_or_more_gets_no_warning(ttl: int) -> None:
    assert short_ttl_warning(ttl) is None


def test_a_role_whose_max_ttl_cuts_tokens_under_35_seconds_gets_the_warning_too(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[roles.user]\nmax_ttl = 20\n[roles.user.capability]\n"chat:*" = ["subscribe"]\n'
        '[roles.admin]\nmax_ttl = 60\n[roles.admin.capability]\n"*" = ["*"]\n',
        encoding="utf-8",
    )
    warnings = short_ttl_warnings(load({"AUTHSERVER_POLICY": str(policy)}))
    assert len(warnings) == 1
    assert warnings[0].startswith("role 'user' max_ttl=20s is under 35s")
    assert short_ttl_warnings(load({"TOKEN_TTL": "10"})) == [short_ttl_warning(10)]


# --- AUTHSERVER_PUBLIC_URL: where browsers reach the service (the provider login's redirect_uri) -------


@pytest.mark.parametrize(
    ("value", "public_url"),
    [
        ("https://chat.example.com", "https://chat.example.com"),
        ("https://chat.example.com/", "https://chat.example.com"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https://[2001:db8::1]:8443/", "https://[2001:db8::1]:8443"),
    ],
)
def test_the_public_url_is_an_origin_without_its_last_slash(value: str, public_url: str) -> None:
    assert load({"AUTHSERVER_PUBLIC_URL": value}).public_url == public_url


@pytest.mark.parametrize(
    "value",
    [
        "chat.example.com",
        "ftp://chat.example.com",
        "https://",
        "https://chat.example.com/auth",
        "https://chat.example.com/?next=/",
        "https://chat.example.com/#top",
        "https://user:secret@chat.example.com",
        "https://chat.example.com:99999",
        "https://chat.example.com?",
        "https://chat.example.com/#",
        "https://chat.example.com\\@evil.example",
        "https://chat example.com",
    ],
)
def test_a_public_url_with_a_path_query_fragment_or_credentials_is_refused(value: str) -> None:
    [problem] = problems_of({"AUTHSERVER_PUBLIC_URL": value})
    assert problem.startswith("AUTHSERVER_PUBLIC_URL: ")
    assert "secret" not in problem


def test_provider_login_needs_the_public_url() -> None:
    provider = {"OIDC_ISSUER": "https://idp.example.com", "OIDC_AUDIENCE": "chat", "OIDC_CLIENT_ID": "page"}
    with pytest.raises(ConfigError) as refused:
        load(provider)
    assert "AUTHSERVER_PUBLIC_URL: required with OIDC_CLIENT_ID" in refused.value.message
    settings = load({**provider, "AUTHSERVER_PUBLIC_URL": "https://chat.example.com"})
    assert settings.provider_login == "idp.example.com"


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("redis://cache.internal/2", "redis://cache.internal:6379/2"),
        ("rediss://:pw@cache.internal", "rediss://:pw@cache.internal:6379"),
        ("redis://[::1]/0", "redis://[::1]:6379/0"),
        ("redis://cache.internal:6380/0", "redis://cache.internal:6380/0"),
    ],
)
def test_a_redis_url_without_a_port_means_redis_default_port_written_out(given: str, used: str) -> None:
    assert load({"REDIS_URL": given}).redis_url == used


# --- the admin API -------------------------------------------------------------------------------------


def test_the_admin_api_is_on_by_default_and_can_be_switched_off() -> None:
    settings = load({})
    assert (settings.admin_api, settings.admin_role, settings.admin_rate) == (True, None, "120/minute")
    assert load({"AUTHSERVER_ADMIN_API": "off"}).admin_api is False


def test_an_admin_role_needs_a_provider_role_claim_to_carry_it() -> None:
    problems = problems_of({"AUTHSERVER_ADMIN_ROLE": "ops"})
    assert any(p.startswith("AUTHSERVER_ADMIN_ROLE: no trusted provider has a role claim") for p in problems)
    provider = {"OIDC_ISSUER": "https://idp.example", "OIDC_AUDIENCE": "chat"}
    assert load({**provider, "OIDC_ROLE_CLAIM": "roles", "AUTHSERVER_ADMIN_ROLE": "ops"}).admin_role == "ops"


def test_admin_settings_out_of_range_are_problems() -> None:
    problems = problems_of({"AUTHSERVER_ADMIN_API": "on", "AUTHSERVER_ADMIN_RATE": "lots"})
    assert [p.split(":")[0] for p in problems] == ["AUTHSERVER_ADMIN_API", "AUTHSERVER_ADMIN_RATE"]
