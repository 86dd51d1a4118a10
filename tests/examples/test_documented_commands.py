"""Every command of the README and docs/ that ``tests/test_docs.py`` marks RUN, run as written against a live
``scripts/serve --idp`` (the dev_stack), with the documented ports 8000-8003 (and the placeholder host
``https://auth.example.com``) replaced by the stack's own."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_docs import RUN, Command, coverage_of, documented_commands

from .conftest import REPO, DevStack, four_free_ports, stop

pytestmark = [pytest.mark.node]
PASSWORD = "a long passphrase for the docs"


def run_commands(kind: str) -> list[Command]:
    chosen = []
    for command in documented_commands():
        entry = coverage_of(command)
        if entry is not None and entry[1] == RUN and re.match(kind, command.line):
            chosen.append(command)
    return chosen


def on_stack(line: str, stack: DevStack) -> str:
    line = line.replace("https://auth.example.com", stack.service)
    for offset in range(4):
        line = line.replace(f"127.0.0.1:{8000 + offset}", f"127.0.0.1:{stack.port + offset}")
    return line


def ids(command: Command) -> str:
    return f"{command.page}: {command.line[:70]}"


def test_scripts_serve_idp_is_the_stack_the_guide_describes(dev_stack: DevStack) -> None:
    assert run_commands(r"scripts/serve --idp$"), "the docs no longer show scripts/serve --idp"
    config = httpx.get(f"{dev_stack.service}/client-config", timeout=10).json()
    assert config["providerLogin"] == {"name": "Dev IdP", "url": "/login/oidc"}
    assert config["clientOptions"]["port"] == dev_stack.sandbox_port
    discovery = httpx.get(f"{dev_stack.issuer}/.well-known/openid-configuration", timeout=10).json()
    assert discovery["issuer"] == dev_stack.issuer
    assert httpx.get(f"{dev_stack.examples}/other-origin/", timeout=10).status_code == 200


@pytest.fixture
def serve_on_free_ports(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = four_free_ports()
    env_file = tmp_path / "none.env"
    env_file.write_text("", encoding="utf-8")
    env = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}",
        "AUTHSERVER_ENV_FILE": str(env_file),
    }
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [str(REPO / "scripts" / "serve"), "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield port, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        stop(process)


def test_scripts_serve_with_a_port_moves_the_service_and_its_sandbox(
    serve_on_free_ports: tuple[int, subprocess.Popen[bytes]],
) -> None:
    assert run_commands(r"scripts/serve --port \d+$"), "the docs no longer show scripts/serve --port"
    port, process = serve_on_free_ports
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, "scripts/serve --port exited"
        try:
            config = httpx.get(f"http://127.0.0.1:{port}/client-config", timeout=2).json()
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "scripts/serve --port never answered"
            time.sleep(0.2)
    assert config["clientOptions"]["port"] == port + 1
    assert httpx.get(f"http://127.0.0.1:{port + 1}/time", timeout=5).status_code == 200


@pytest.mark.parametrize("command", run_commands(r"curl "), ids=ids)
def test_each_documented_curl_works_against_the_stack(dev_stack: DevStack, command: Command) -> None:
    output = dev_stack.run(on_stack(command.line, dev_stack), extra_env={"ACCESS_TOKEN": idp_token(dev_stack)})
    if "-si -X OPTIONS" in command.line:
        assert output.lower().startswith("access-control-allow-origin: http://127.0.0.1:")
    else:
        body = json.loads(output)
        assert body.get("token") or body.get("access_token"), output


def idp_token(stack: DevStack) -> str:
    return stack.run("scripts/idp-token alice").strip()


def test_idp_token_prints_a_jwt(dev_stack: DevStack) -> None:
    (command,) = {c.line: c for c in run_commands(r"scripts/idp-token alice$")}.values()
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", dev_stack.run(command.line).strip())


def test_a_development_token_from_the_cli_is_accepted_by_the_running_sandbox(dev_stack: DevStack) -> None:
    (command,) = run_commands(r"AUTHSERVER_ENV=development .venv/bin/authserver token ")
    details = json.loads(dev_stack.run(command.line))
    assert details["clientId"] == "alice"
    answer = httpx.get(
        f"http://127.0.0.1:{dev_stack.sandbox_port}/channels/chat:docs/messages",
        headers={"Authorization": f"Bearer {details['token']}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def test_smoke_against_the_development_server(dev_stack: DevStack) -> None:
    """docs/cli.md: `TOKEN_TTL=35 scripts/serve &` (the stack runs with TOKEN_TTL=35), then smoke."""
    assert run_commands(r"TOKEN_TTL=35 scripts/serve &$")
    (command,) = run_commands(r"AUTHSERVER_ENV=development \.venv/bin/authserver smoke ")
    output = dev_stack.run(on_stack(command.line, dev_stack), timeout=120)
    assert "connected as clientId smoke" in output


def test_the_users_commands_in_their_documented_order(dev_stack: DevStack, tmp_path: Path) -> None:
    commands = run_commands(r"\.venv/bin/authserver users ")
    assert [c.line.split()[2] for c in commands][:3] == ["add", "add", "list"]
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'accounts.db'}", "AUTHSERVER_ENV": "development"}
    for command in commands:
        wants_password = command.line.split()[2] in ("add", "set-password")
        line = f"printf '%s\\n' '{PASSWORD}' | {command.line}" if wants_password else command.line
        output = dev_stack.run(line, extra_env=env)
        if command.line.endswith("users list"):
            assert "alice" in output and "bob@example.com" in output
