"""A misspelled setting gets a word, naming the setting it was probably meant to be.

``TOKEN_TLL``, ``SESION_SECRET`` or ``AUTHSERVER_DEMOLOGIN`` used to be ignored without a word, so the
service ran with the default the operator meant to change. A name that is set but is no setting, and
either has a prefix of the service's settings (AUTHSERVER_, ABLY_, OIDC_, TOKEN_, SESSION_, DATABASE_,
REDIS_) or is very like a setting whatever its prefix, is now reported with the closest setting:
``serve`` logs it as a WARNING and goes on; ``check`` lists it as a problem and exits 3. Names of
other programs (PATH, HOME, LANG...) are left alone.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from authserver.config import SETTINGS_HELP, load_settings
from authserver.errors import ConfigError

from helpers import AUTHSERVER, running_authserver

MISSPELLINGS = [
    ("TOKEN_TLL", "TOKEN_TTL"),
    ("SESION_SECRET", "SESSION_SECRET"),
    ("AUTHSERVER_DEMOLOGIN", "AUTHSERVER_DEMO_LOGIN"),
    ("ABLY_APIKEY", "ABLY_API_KEY"),
    ("REDIS_URI", "REDIS_URL"),
    ("OIDC_AUDIENCES", "OIDC_AUDIENCE"),
]


def development(tmp_path: Path, **settings: str) -> dict[str, str]:
    return {"AUTHSERVER_ENV": "development", "DATABASE_URL": f"sqlite:///{tmp_path}/a.db", **settings}


def bare_env(workdir: Path, **settings: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), **settings}


@pytest.mark.parametrize(("name", "meant"), MISSPELLINGS)
def test_a_misspelled_setting_in_the_environment_names_the_setting_meant(name: str, meant: str, tmp_path: Path) -> None:
    settings = load_settings(development(tmp_path, **{name: "300"}), env_file=None)
    assert settings.misspelled == (f"{name}: not a setting of authserver; did you mean {meant}?",)


def test_a_misspelled_setting_in_the_env_file_is_found_too(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("AUTHSERVER_ENV=development\nTOKEN_TLL=300\n", encoding="utf-8")
    settings = load_settings({}, env_file=env_file)
    assert settings.misspelled == ("TOKEN_TLL: not a setting of authserver; did you mean TOKEN_TTL?",)
    assert settings.token_ttl == 3600  # what the operator did not get


def test_an_unknown_name_with_the_services_prefix_is_reported_even_when_nothing_is_close(tmp_path: Path) -> None:
    settings = load_settings(development(tmp_path, AUTHSERVER_FROBNICATE="yes"), env_file=None)
    assert settings.misspelled == (
        "AUTHSERVER_FROBNICATE: not a setting of authserver (see env.example for every setting)",
    )


@pytest.mark.parametrize(
    "name",
    [
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "SHELL",
        "TERM",
        "USER",
        "PWD",
        "HOSTNAME",
        "XDG_SESSION_TYPE",
        "GITHUB_TOKEN",
        "PGDATABASE",
        "http_proxy",
        "PYTHONPATH",
        "SESSION_MANAGER",  # the desktop's session manager
        "AUTHSERVER_REQUIRE_E2E",  # the test harness's
        "ABLY_JS_NODE_MODULES",  # the test harness's
        # what Kubernetes injects for the Services named redis and authserver in the namespace
        "REDIS_SERVICE_HOST",
        "REDIS_SERVICE_PORT",
        "REDIS_PORT_6379_TCP",
        "REDIS_PORT_6379_TCP_ADDR",
        "AUTHSERVER_SERVICE_PORT_HTTP",
        "AUTHSERVER_PORT_8000_TCP_PROTO",
    ],
)
def test_names_of_other_programs_are_left_alone(name: str, tmp_path: Path) -> None:
    assert load_settings(development(tmp_path, **{name: "x"}), env_file=None).misspelled == ()


def test_every_real_setting_is_left_alone(tmp_path: Path) -> None:
    # Each set to nothing (empty counts as unset), so no value can be refused: only the names matter.
    settings = load_settings({**dict.fromkeys(SETTINGS_HELP, ""), **development(tmp_path)}, env_file=None)
    assert settings.misspelled == ()


def test_a_misspelling_is_listed_with_the_problems_it_causes_without_its_value(tmp_path: Path) -> None:
    secret = "s" * 40
    with pytest.raises(ConfigError) as refused:
        load_settings(
            {
                "ABLY_API_KEY": "appId.keyId:" + "k" * 43,
                "SESION_SECRET": secret,
                "DATABASE_URL": f"sqlite:///{tmp_path}/a.db",
            },
            env_file=None,
        )
    assert refused.value.problems == [
        "SESSION_SECRET: required when ABLY_API_KEY is set (at least 32 characters)",
        "SESION_SECRET: not a setting of authserver; did you mean SESSION_SECRET?",
    ]
    assert secret not in refused.value.message


def test_check_reports_a_likely_misspelling_as_a_problem_and_exits_non_zero(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AUTHSERVER_DEMOLOGIN=false\n", encoding="utf-8")
    env = bare_env(tmp_path, AUTHSERVER_ENV="development", TOKEN_TLL="300")
    result = subprocess.run([AUTHSERVER, "check"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert "AUTHSERVER_DEMOLOGIN: not a setting of authserver; did you mean AUTHSERVER_DEMO_LOGIN?" in result.stderr
    assert "TOKEN_TLL: not a setting of authserver; did you mean TOKEN_TTL?" in result.stderr
    assert "configuration OK: development" in result.stdout  # the rest is still shown


def test_serve_warns_about_a_likely_misspelling_at_start_and_goes_on(tmp_path: Path) -> None:
    env = bare_env(tmp_path, AUTHSERVER_ENV="development", AUTHSERVER_PORT="0", AUTHSERVER_SANDBOX_PORT="0")
    env["TOKEN_TLL"] = "300"
    log = tmp_path / "serve.log"
    with running_authserver(["serve"], env=env, cwd=tmp_path, log=log) as serve:
        assert httpx.get(f"{serve.url}/healthz").status_code == 200
    lines = log.read_text(encoding="utf-8").splitlines()
    assert any(
        "WARNING" in line and "TOKEN_TLL: not a setting of authserver; did you mean TOKEN_TTL?" in line
        for line in lines
    )
