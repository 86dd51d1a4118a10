"""Time from a sign-out at the identity provider to the live connections' disconnection (back-channel logout).

Starts the real oidc-provider (``tests/oidc/provider.mjs``, back-channel logout on), the sandbox and the
token service (revocable tokens, ``OIDC_BACKCHANNEL_LOGOUT_AUDIENCE`` set) under uvicorn on loopback. For
each run a fresh user signs in at the provider (its own login pages, as a browser would), ably-js (under
Node, ``tests/node/revocation_live.mjs``) and ably-python connect with the provider's access token in their
auth headers, then the user signs out at the provider (``/session/end/confirm``, which posts the logout
token to the service before it answers) and the clock, started just before that request, runs until

- ably-js: the client reports DISCONNECTED 40141;
- ably-python: the sandbox (Ably's side) has dropped its transport for the revoked token (ably-python
  renews on 40141 without reporting it, so its own states cannot be timed).

Prints each run, then the median and the worst, per client.

    .venv/bin/python bench/backchannel_latency.py --runs 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from ably import AblyRealtime
from ably.transport import websockettransport

from authserver.cli.smoke import connect_with_port
from authserver.config import load_settings
from authserver.core.keys import AblyKey
from authserver.http.app import create_app
from authserver.sandbox import create_sandbox_app

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from oidc.conftest import (  # noqa: E402
    AUDIENCE,
    NODE,
    NODE_MODULES,
    PAGE_CLIENT_ID,
    UNUSED_REDIRECT,
    Provider,
    ProviderRun,
)

from helpers import bound_socket, running_server  # noqa: E402

KEY = AblyKey("benchApp.key", "bench-secret-not-real-0123456789abcdef")
DRIVER = ROOT / "tests" / "node" / "revocation_live.mjs"


def python_dropped(sandbox: Any, connection_id: str | None) -> bool:
    return not any(c.id == connection_id and c.transport is not None for c in list(sandbox.connections))


def js_driver(service: str, sandbox_port: int, victim: str, bystander: str) -> subprocess.Popen[str]:
    scenario = {
        "port": sandbox_port,
        "authUrl": f"{service}/auth",
        "victimBearer": victim,
        "bystanderBearer": bystander,
        "expect": "revoked",
        "format": "json",
    }
    env = {**os.environ, "ABLY_JS_NODE_MODULES": str(NODE_MODULES), "SCENARIO": json.dumps(scenario)}
    assert NODE is not None
    return subprocess.Popen(
        [NODE, str(DRIVER)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


async def one_run(
    provider: Provider, service: str, sandbox_port: int, sandbox: Any, bystander: str, run: int
) -> tuple[float, float]:
    """(ably-js, ably-python) seconds from the sign-out request to each client's disconnection."""
    browser = httpx.Client()
    token = (await asyncio.to_thread(provider.sign_in, browser, f"bench-{run}-{os.getpid()}"))["access_token"]
    python = AblyRealtime(
        auth_url=f"{service}/auth",
        auth_headers={"Authorization": f"Bearer {token}"},
        endpoint="127.0.0.1",
        port=sandbox_port,
        tls=False,
    )
    driver = js_driver(service, sandbox_port, token, bystander)
    try:
        assert driver.stdout is not None and driver.stdin is not None
        ready = await asyncio.to_thread(driver.stdout.readline)
        if not ready.startswith('{"ready"'):
            raise RuntimeError(f"ably-js did not connect: {ready}{driver.communicate(timeout=10)}")
        deadline = time.monotonic() + 10
        while python.connection.state.value != "connected" or python_dropped(
            sandbox, python.connection.connection_manager.connection_id
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"ably-python not connected: {python.connection.state}")
            await asyncio.sleep(0.005)
        python_id = python.connection.connection_manager.connection_id
        driver.stdin.write("go\n")
        driver.stdin.flush()
        began = time.time()
        signed_out = asyncio.ensure_future(asyncio.to_thread(provider.end_session, browser))
        while not python_dropped(sandbox, python_id):
            await asyncio.sleep(0.001)
        python_took = time.time() - began
        answered = await signed_out
        if answered.status_code != 303:
            raise RuntimeError(f"the provider's sign-out answered {answered.status_code}")
        out, err = await asyncio.to_thread(driver.communicate, None, 60)
        result = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
        if not result["ok"]:
            raise RuntimeError(f"ably-js: {result.get('error')} {err[-500:]}")
        js_at = next(c["at"] for c in result["changes"] if c["code"] == 40141) / 1000
        return js_at - began, python_took
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(python.close(), timeout=5)
        if driver.poll() is None:
            driver.kill()
        browser.close()


def report(client: str, times: list[float]) -> None:
    for run, took in enumerate(times, 1):
        print(f"{client} run {run:2d}: {took * 1000:7.1f} ms", flush=True)
    print(f"{client}: provider sign-out -> disconnection over {len(times)} runs:", end=" ")
    print(f"median {statistics.median(times) * 1000:.1f} ms, worst {max(times) * 1000:.1f} ms,", end=" ")
    print(f"best {min(times) * 1000:.1f} ms", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if NODE is None or not (NODE_MODULES / "oidc-provider").is_dir() or not (NODE_MODULES / "ably").is_dir():
        raise SystemExit("needs node, oidc-provider and ably from npm (scripts/setup --test installs them)")
    websockettransport.WebSocketTransport.connect = connect_with_port
    providers = ProviderRun()
    provider = providers.start()
    sandbox_app = create_sandbox_app([KEY])
    try:
        with (
            tempfile.TemporaryDirectory() as folder,
            running_server(sandbox_app) as sandbox_url,
            bound_socket() as sock,
        ):
            settings = load_settings(
                {
                    "ABLY_API_KEY": f"{KEY.name}:{KEY.secret}",
                    "ABLY_ENDPOINT": sandbox_url,
                    "SESSION_SECRET": "bench-session-secret-0123456789abcdef",
                    "DATABASE_URL": f"sqlite:///{Path(folder) / 'bench.db'}",
                    "TOKEN_TTL": "600",
                    "AUTHSERVER_LOG_LEVEL": "warning",
                    "OIDC_ISSUER": provider.issuer,
                    "OIDC_AUDIENCE": AUDIENCE,
                    "OIDC_BACKCHANNEL_LOGOUT_AUDIENCE": PAGE_CLIENT_ID,
                },
                env_file=None,
            )
            with running_server(create_app(settings), sock=sock) as service:
                provider.configure(
                    redirect_uris=[UNUSED_REDIRECT], backchannel_logout_uri=f"{service}/oidc/backchannel-logout"
                )
                sandbox, port = sandbox_app.state.sandbox, int(sandbox_url.rsplit(":", 1)[1])
                with httpx.Client() as other:
                    bystander = provider.sign_in(other, "bench-bystander")["access_token"]
                js: list[float] = []
                python: list[float] = []

                async def runs() -> None:
                    for run in range(args.runs):
                        took = await one_run(provider, service, port, sandbox, bystander, run)
                        js.append(took[0])
                        python.append(took[1])

                asyncio.run(runs())
                report("ably-js", js)
                report("ably-python", python)
    finally:
        for started in providers.started:
            started.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
