"""`authserver serve` with no configuration at all: development mode with an embedded sandbox, and
the ably-python smoke test (`authserver smoke`) staying connected across token renewals."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from helpers import free_port


def authserver_bin() -> str:
    return str(Path(sys.executable).with_name("authserver"))


@dataclass
class Served:
    url: str
    log: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("serve")
    port, sandbox_port = free_port(), free_port()
    # Nothing but what any shell has, the ports (CI may run other servers) and a short TTL so that
    # renewals come every few seconds. No key, no secret, no database URL, no .env.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "AUTHSERVER_PORT": str(port),
        "AUTHSERVER_SANDBOX_PORT": str(sandbox_port),
        "TOKEN_TTL": "5",
    }
    log = workdir / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen([authserver_bin(), "serve"], cwd=workdir, env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError(f"serve did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield Served(url, log, env)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_zero_configuration_runs_in_announced_development_mode(served: Served) -> None:
    health = httpx.get(f"{served.url}/healthz").json()
    assert health["status"] == "ok" and health["development"] is True
    text = served.log.read_text()
    assert "DEVELOPMENT MODE" in text and "embedded Ably sandbox" in text
    assert "DEMO LOGIN IS ON" in text and "NOT FOR PRODUCTION" in text


def test_zero_configuration_points_the_page_at_the_embedded_sandbox(served: Served) -> None:
    options = httpx.get(f"{served.url}/client-config").json()["clientOptions"]
    assert options["endpoint"] == "127.0.0.1" and options["tls"] is False
    assert options["port"] == int(served.env["AUTHSERVER_SANDBOX_PORT"])
    assert httpx.get(f"http://127.0.0.1:{options['port']}/time").status_code == 200


def test_smoke_stays_connected_across_three_renewals(served: Served) -> None:
    result = subprocess.run(
        [authserver_bin(), "smoke", "--url", served.url, "--renewals", "3", "--timeout", "60"],
        env=served.env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "token renewed (3)" in result.stdout
    assert "OK:" in result.stdout and "connection stayed connected" in result.stdout


def test_smoke_fails_with_a_clear_message(served: Served) -> None:
    result = subprocess.run(
        [authserver_bin(), "smoke", "--url", served.url, "--username", "not:safe"],
        env=served.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "SMOKE FAILED: login failed: HTTP 400" in result.stdout


def test_serve_logs_carry_no_tokens(served: Served) -> None:
    text = served.log.read_text()
    assert "eyJ" not in text
    assert "access_token=" not in text.replace("access_token=[redacted]", "")
    assert "accessToken=" not in text.replace("accessToken=[redacted]", "")
