"""Development mode is asked for by name, never implied by a missing key.

A missing or empty ``ABLY_API_KEY`` (``env.example`` copied as it is, say) used to start the embedded
sandbox with demo login on, on any address. Now ``serve`` and ``check`` refuse it, naming
``ABLY_API_KEY`` and the two ways to ask for development: ``AUTHSERVER_ENV=development`` or
``authserver serve --dev`` (which ``scripts/serve`` uses). In development, the session secret is kept
beside the development key, so a restart keeps everyone logged in.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from authserver.config import load_settings
from authserver.core.keys import parse_api_key
from authserver.errors import ConfigError

from helpers import API_KEY, AUTHSERVER, SESSION_SECRET, running_authserver

REPO = Path(__file__).resolve().parent.parent.parent


def bare_env(workdir: Path, **settings: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), **settings}


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AUTHSERVER, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("environ", [{}, {"ABLY_API_KEY": ""}, {"ABLY_API_KEY": "  "}], ids=["unset", "empty", "blank"])
def test_settings_without_a_key_and_without_development_are_refused(environ: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({**environ, "DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}, env_file=None)
    problem = "\n".join(refused.value.problems)
    assert "ABLY_API_KEY" in problem
    assert "AUTHSERVER_ENV=development" in problem and "authserver serve --dev" in problem


def test_development_asked_for_by_name_runs_without_a_key(tmp_path: Path) -> None:
    settings = load_settings(
        {"AUTHSERVER_ENV": "development", "DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}, env_file=None
    )
    assert settings.development and settings.demo_login


def test_an_unknown_environment_name_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="AUTHSERVER_ENV: 'dev' is not one of development, production"):
        load_settings({"AUTHSERVER_ENV": "dev", "DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}, env_file=None)


def test_production_by_name_without_a_key_is_refused_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ABLY_API_KEY"):
        load_settings({"AUTHSERVER_ENV": "production", "DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}, env_file=None)


@pytest.mark.parametrize("command", [["check"], ["serve"]])
def test_check_and_serve_without_a_key_exit_non_zero_naming_the_way_to_development(
    tmp_path: Path, command: list[str]
) -> None:
    # env.example copied as .env, as the systemd unit's instructions say: the key is empty there.
    (tmp_path / ".env").write_text((REPO / "env.example").read_text(encoding="utf-8"), encoding="utf-8")
    result = run([*command], bare_env(tmp_path, AUTHSERVER_PORT="0", AUTHSERVER_SANDBOX_PORT="0"), tmp_path)
    assert result.returncode != 0
    assert "ABLY_API_KEY" in result.stderr
    assert "authserver serve --dev" in result.stderr and "AUTHSERVER_ENV=development" in result.stderr
    assert "sandbox on" not in result.stdout + result.stderr  # nothing was started


def test_serve_dev_starts_the_embedded_sandbox_with_demo_login(tmp_path: Path) -> None:
    env = bare_env(tmp_path, AUTHSERVER_PORT="0", AUTHSERVER_SANDBOX_PORT="0")
    with running_authserver(["serve", "--dev"], env=env, cwd=tmp_path, log=tmp_path / "serve.log") as serve:
        assert serve.ably_endpoint is not None and serve.ably_endpoint.startswith("http://127.0.0.1:")
        assert httpx.get(f"{serve.url}/client-config").json()["demoLogin"] is True


def test_scripts_serve_asks_for_development_by_name() -> None:
    script = (REPO / "scripts" / "serve").read_text(encoding="utf-8")
    assert "serve --dev" in script


def test_a_development_restart_keeps_the_sessions(tmp_path: Path) -> None:
    env = bare_env(tmp_path, AUTHSERVER_PORT="0", AUTHSERVER_SANDBOX_PORT="0", AUTHSERVER_ENV="development")
    log = tmp_path / "serve.log"
    with running_authserver(["serve"], env=env, cwd=tmp_path, log=log) as serve:
        login = httpx.post(f"{serve.url}/login", json={"username": "dana", "password": "anything"})
        assert login.status_code == 200
        cookies = login.cookies
    with running_authserver(["serve"], env=env, cwd=tmp_path, log=log) as serve:
        token = httpx.get(f"{serve.url}/auth", cookies=cookies)
    assert token.status_code == 200, token.text
    assert token.json()["clientId"] == "dana"
    assert "ephemeral" not in log.read_text(encoding="utf-8").split("dana")[-1]


def test_a_session_secret_from_the_environment_wins_over_the_development_one(tmp_path: Path) -> None:
    environ = {"AUTHSERVER_ENV": "development", "DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}
    key = parse_api_key(API_KEY)
    kept = "k" * 43
    chosen = load_settings({**environ, "SESSION_SECRET": SESSION_SECRET}, env_file=None)
    assert chosen.with_sandbox(key, "http://127.0.0.1:1", kept).session_secret == SESSION_SECRET
    unset = load_settings(environ, env_file=None)
    pointed = unset.with_sandbox(key, "http://127.0.0.1:1", kept)
    assert pointed.session_secret == kept and not pointed.session_secret_ephemeral


def test_a_key_means_production_whatever_authserver_env_says_and_check_says_so(tmp_path: Path) -> None:
    env = bare_env(tmp_path, AUTHSERVER_ENV="development", ABLY_API_KEY=API_KEY, SESSION_SECRET=SESSION_SECRET)
    result = run(["check"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "configuration OK: production" in result.stdout
    assert "AUTHSERVER_ENV=development is ignored: ABLY_API_KEY is set" in result.stdout
