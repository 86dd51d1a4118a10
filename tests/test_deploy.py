"""The deployment kit in ``deploy/``: what can be checked without a container engine or systemd.

The compose file's settings are the ones ``authserver check`` accepts, the Dockerfile and the
systemd unit start commands the CLI has, and the proxy the service trusts is the one compose runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from dotenv import dotenv_values

from authserver.config import SETTINGS_HELP

from helpers import API_KEY, AUTHSERVER, SESSION_SECRET

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ROOT = DEPLOY.parent
#: Settings compose passes that ``check`` does not list (none since the storage work landed).
PENDING_SETTINGS: set[str] = set()


def _compose_environment(service: str) -> dict[str, str]:
    """The ``environment:`` mapping of one service in compose.yaml (read by indentation: no YAML
    library is a dependency)."""
    lines = (DEPLOY / "compose.yaml").read_text().splitlines()
    start = lines.index(f"  {service}:")
    env: dict[str, str] = {}
    inside = False
    for line in lines[start + 1 :]:
        if re.match(r"^  \S", line) or not line.strip():
            if not line.strip():
                continue
            break
        if line == "    environment:":
            inside = True
            continue
        if inside:
            found = re.match(r"^      ([A-Z_]+): (.*)$", line)
            if not found:
                break
            env[found[1]] = found[2]
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AUTHSERVER, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_compose_settings_are_known_and_accepted_by_check(tmp_path: Path) -> None:
    file_settings = {k: v for k, v in dotenv_values(DEPLOY / "authserver.env").items() if v is not None}
    compose_env = _compose_environment("authserver")
    # The service listens on all of the container's interfaces: /metrics wants a token there.
    assert {"ABLY_API_KEY", "SESSION_SECRET", "AUTHSERVER_METRICS_TOKEN", "DATABASE_URL"} <= compose_env.keys()
    for name in (*file_settings, *compose_env):
        assert name in SETTINGS_HELP or name in PENDING_SETTINGS, name
    # The secrets compose takes from the shell; the database as SQLite here (no PostgreSQL server in
    # this test: the URL's scheme is checked by the storage tests).
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AUTHSERVER_ENV_FILE": str(DEPLOY / "authserver.env"),
        "ABLY_API_KEY": API_KEY,
        "SESSION_SECRET": SESSION_SECRET,
        "AUTHSERVER_METRICS_TOKEN": "deploy-test-metrics-token-0123456789",
        "DATABASE_URL": f"sqlite:///{tmp_path}/authserver.db",
    }
    result = _run(["check"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "configuration OK: production" in result.stdout
    assert "WARNING" not in result.stdout


def test_the_proxy_compose_runs_is_the_one_the_service_trusts() -> None:
    settings = dotenv_values(DEPLOY / "authserver.env")
    compose = (DEPLOY / "compose.yaml").read_text()
    caddy = compose[compose.index("\n  caddy:\n") : compose.index("\n  postgres:\n")]
    address = re.search(r"ipv4_address: (\S+)", caddy)
    assert address is not None
    assert settings["AUTHSERVER_TRUSTED_PROXIES"] == address[1]
    caddyfile = (DEPLOY / "Caddyfile").read_text()
    assert f"reverse_proxy authserver:{settings['AUTHSERVER_PORT']}" in caddyfile
    host = settings["AUTHSERVER_ALLOWED_HOSTS"]
    assert host is not None and f"{host} {{" in caddyfile
    assert settings["AUTHSERVER_COOKIE_SECURE"] == "true"


def _instructions(name: str) -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(name + " ")]


def test_the_image_runs_serve_as_a_non_root_user_with_a_health_check(tmp_path: Path) -> None:
    entrypoint = json.loads(_instructions("ENTRYPOINT")[-1])
    command = json.loads(_instructions("CMD")[-1])
    assert entrypoint == ["authserver"] and command == ["serve"]
    result = _run([*command, "--help"], {"PATH": os.environ["PATH"]}, tmp_path)
    assert result.returncode == 0, result.stderr
    user = _instructions("USER")[-1]
    assert user.split(":")[0] not in ("0", "root")
    health = _instructions("HEALTHCHECK")[-1]
    assert "http://127.0.0.1:8000/healthz" in health
    for copied in _instructions("COPY"):
        if not copied.startswith("--from"):
            assert (ROOT / copied.split()[0]).exists(), copied
    env = dict(re.findall(r"([A-Z_]+)=(\S+)", " ".join(_instructions("ENV"))))
    for name in env:
        assert name in SETTINGS_HELP or name == "PYTHONUNBUFFERED", name


@pytest.mark.parametrize("directive", ["ExecStartPre", "ExecStart"])
def test_the_systemd_unit_starts_commands_the_cli_has(directive: str, tmp_path: Path) -> None:
    unit = (DEPLOY / "authserver.service").read_text()
    found = re.search(rf"^{directive}=(\S+) (.+)$", unit, re.MULTILINE)
    assert found is not None
    assert found[1].endswith("/bin/authserver")
    result = _run([*shlex.split(found[2]), "--help"], {"PATH": os.environ["PATH"]}, tmp_path)
    assert result.returncode == 0, result.stderr


def test_the_systemd_unit_is_hardened() -> None:
    unit = (DEPLOY / "authserver.service").read_text()
    for line in (
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "StateDirectory=authserver",
    ):
        assert re.search(rf"^{re.escape(line)}$", unit, re.MULTILINE), line


def test_the_compose_file_says_how_to_make_the_first_account_with_commands_the_cli_has(tmp_path: Path) -> None:
    prefix = "#   docker compose -f deploy/compose.yaml run --rm authserver "
    commands = [
        line[len(prefix) :] for line in (DEPLOY / "compose.yaml").read_text().splitlines() if line.startswith(prefix)
    ]
    assert "users add alice --role admin" in commands and "db upgrade" in commands
    for command in commands:
        result = _run([*shlex.split(command), "--help"], {"PATH": os.environ["PATH"]}, tmp_path)
        assert result.returncode == 0, result.stderr
