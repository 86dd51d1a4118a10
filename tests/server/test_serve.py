"""`authserver serve` with no configuration but AUTHSERVER_ENV=development (development mode with an
embedded sandbox), and
in production mode against a separate `authserver sandbox` named by ABLY_ENDPOINT; the ably-python
smoke test (`authserver smoke`) stays connected across token renewals in both.

Renewal timing follows real Ably (ably-spec 8.1): the AUTH prompt comes 30 s before expiry and only
for tokens that live longer than that, so the smoke tests use tokens of a little over 30 s (the
in-band renewal comes a few seconds after each issue; under a sandbox that shortens the lead for short
tokens, min(30 s, ttl / 2), it comes at half-life instead, and the tests still pass, more slowly).
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from authserver.config import DEFAULT_ABLY_JS_PATH

from helpers import AUTHSERVER, running_authserver

#: A little over Ably's 30 s AUTH lead: renewal in-band, a few seconds after each issue.
IN_BAND_TTL = "33"


@dataclass
class Served:
    url: str
    #: The port of the Ably sandbox the service uses (embedded, or the separate one).
    sandbox_port: int
    log: Path
    env: dict[str, str]


def bare_env(workdir: Path, **settings: str) -> dict[str, str]:
    """Nothing but what any shell has, plus ``settings``; no .env (the working directory is empty)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), **settings}


def port_of(url: str | None) -> int:
    port = urlsplit(url or "").port
    assert port is not None, url
    return port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("serve")
    # Development mode asked for by name, and no key, no secret, no database URL: only port 0 for both
    # servers (CI may run other servers) and a TTL just over Ably's AUTH lead so that renewals come
    # every few seconds, in-band.
    env = bare_env(
        workdir, AUTHSERVER_ENV="development", AUTHSERVER_PORT="0", AUTHSERVER_SANDBOX_PORT="0", TOKEN_TTL=IN_BAND_TTL
    )
    log = workdir / "serve.log"
    with running_authserver(["serve"], env=env, cwd=workdir, log=log) as serve:
        yield Served(serve.url, port_of(serve.ably_endpoint), log, env)


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("production")
    env = bare_env(
        workdir,
        ABLY_API_KEY="prodApp.prodKey:" + "k" * 43,
        SESSION_SECRET="s" * 40,
        AUTHSERVER_PORT="0",
        AUTHSERVER_SANDBOX_PORT="0",
        TOKEN_TTL=IN_BAND_TTL,
        AUTHSERVER_LOG_LEVEL="debug",
    )
    result = subprocess.run(
        [AUTHSERVER, "users", "add", "carol"],
        input="carol-password\n",
        text=True,
        env=env,
        cwd=workdir,
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    log = workdir / "serve.log"
    # The sandbox first: ABLY_ENDPOINT must name its (announced) port before the service starts.
    with running_authserver(["sandbox"], env=env, cwd=workdir, log=log) as sandbox:
        env["ABLY_ENDPOINT"] = sandbox.url
        with running_authserver(["serve"], env=env, cwd=workdir, log=log) as serve:
            assert serve.ably_endpoint == sandbox.url
            yield Served(serve.url, sandbox.port, log, env)


def test_development_asked_for_without_a_key_runs_in_announced_development_mode(served: Served) -> None:
    health = httpx.get(f"{served.url}/healthz").json()
    assert health["status"] == "ok" and health["development"] is True
    text = served.log.read_text()
    assert "DEVELOPMENT MODE" in text and "embedded Ably sandbox" in text
    assert "DEMO LOGIN IS ON" in text and "NOT FOR PRODUCTION" in text


def test_zero_configuration_points_the_page_at_the_embedded_sandbox(served: Served) -> None:
    options = httpx.get(f"{served.url}/client-config").json()["clientOptions"]
    assert options["endpoint"] == "127.0.0.1" and options["tls"] is False
    assert options["port"] == served.sandbox_port
    assert httpx.get(f"http://127.0.0.1:{options['port']}/time").status_code == 200


def test_smoke_stays_connected_across_three_renewals(served: Served) -> None:
    result = subprocess.run(
        [AUTHSERVER, "smoke", "--url", served.url, "--renewals", "3", "--timeout", "100"],
        env=served.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "token renewed (3)" in result.stdout
    assert "OK:" in result.stdout and "connection stayed connected" in result.stdout


def test_smoke_fails_with_a_clear_message(served: Served) -> None:
    result = subprocess.run(
        [AUTHSERVER, "smoke", "--url", served.url, "--username", "not:safe"],
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


def test_production_mode_follows_ably_endpoint_to_a_separate_sandbox(production: Served) -> None:
    health = httpx.get(f"{production.url}/healthz").json()
    assert health["development"] is False and health["keyName"] == "prodApp.prodKey"
    options = httpx.get(f"{production.url}/client-config").json()["clientOptions"]
    assert options["port"] == production.sandbox_port
    # demo login is off in production: an unknown name does not get in
    assert httpx.post(f"{production.url}/login", json={"username": "x", "password": "y"}).status_code == 401
    result = subprocess.run(
        [AUTHSERVER, "smoke", "--url", production.url, "--username", "carol", "--password-stdin", "--renewals", "2"],
        input="carol-password\n",
        env=production.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "token renewed (2)" in result.stdout
    text = production.log.read_text()
    assert "DEMO LOGIN" not in text
    for secret in ("k" * 43, "s" * 40, "carol-password", "eyJ"):
        assert secret not in text  # debug logging of both servers, and still no credential


def test_zero_configuration_serves_the_local_ably_js_when_it_is_installed(served: Served) -> None:
    text = served.log.read_text()
    source = httpx.get(f"{served.url}/client-config").json()["ablyJs"]
    if (DEFAULT_ABLY_JS_PATH / "build" / "ably.min.js").is_file():
        assert f"ably-js for the page: the local npm copy in {DEFAULT_ABLY_JS_PATH}" in text
        assert source == {"src": "/vendor/ably.min.js", "integrity": None}
        script = httpx.get(f"{served.url}/vendor/ably.min.js")
        assert script.status_code == 200 and len(script.content) > 100_000
    else:  # no npm copy: the CDN, and the log says why
        assert "ably-js for the page: Ably's CDN, since there is no local copy" in text
        assert source["src"].startswith("https://cdn.ably.com/")


def test_the_page_is_told_that_demo_login_is_on_only_in_development(served: Served, production: Served) -> None:
    assert httpx.get(f"{served.url}/client-config").json()["demoLogin"] is True
    assert httpx.get(f"{production.url}/client-config").json()["demoLogin"] is False


def test_a_short_token_ttl_is_announced_with_how_ably_renews_it(served: Served) -> None:
    text = served.log.read_text()
    assert f"TOKEN_TTL={IN_BAND_TTL}s is under 35s: real Ably asks a client to renew (AUTH) only 30s" in text
    assert "40142" in text


def test_token_mints_for_the_running_development_sandbox_without_a_key(served: Served) -> None:
    workdir = Path(served.env["HOME"])
    result = subprocess.run(
        [AUTHSERVER, "token", "--user", "visitor", "--format", "jwt"],
        env=served.env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    history = f"http://127.0.0.1:{served.sandbox_port}/channels/chat:lobby/messages"
    assert httpx.get(history, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert httpx.get(history, headers={"Authorization": "Bearer not-a-token"}).status_code == 401


def free_port_pair() -> int:
    """A port P with P + 1 also free just now (for a test of ``serve --port P`` itself)."""
    for _ in range(50):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no two free consecutive ports")


def test_serve_port_moves_the_embedded_sandbox_to_the_next_port(tmp_path: Path) -> None:
    env = bare_env(tmp_path)
    # NOTE: the one test that needs a chosen port: the ports were free a moment ago; a retry covers
    # the rare case that another process took one in between.
    for attempt in range(3):
        port = free_port_pair()
        try:
            with running_authserver(
                ["serve", "--dev", "--port", str(port)], env=env, cwd=tmp_path, log=tmp_path / "serve.log"
            ) as serve:
                assert serve.url == f"http://127.0.0.1:{port}"
                assert serve.ably_endpoint == f"http://127.0.0.1:{port + 1}"
                options = httpx.get(f"{serve.url}/client-config").json()["clientOptions"]
                assert options["port"] == port + 1
                return
        except AssertionError as exc:
            if "Address already in use" not in str(exc) or attempt == 2:
                raise


def test_the_service_listens_through_duplicates_of_its_one_socket() -> None:
    # uvloop accepts one connection per listener per turn of the loop: serve listens through several
    # descriptors of one socket (one port, one accept queue), each a listener of its own.
    from authserver.server.serving import acceptors, bind

    first = bind("127.0.0.1", 0)
    listeners = acceptors(first, 4)
    try:
        assert len({sock.fileno() for sock in listeners}) == 4
        assert {sock.getsockname() for sock in listeners} == {first.getsockname()}
        assert not any(sock.get_inheritable() for sock in listeners[1:])  # handed to workers explicitly
        first.listen(8)
        with socket.create_connection(first.getsockname(), timeout=5):
            accepted, _ = listeners[3].accept()  # a connection to the port waits on every one of them
            accepted.close()
    finally:
        port = first.getsockname()[1]
        for sock in listeners:
            sock.close()
    bind("127.0.0.1", port).close()  # all closed: the port is free again
