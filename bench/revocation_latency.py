"""Time from a logout to the live connection's disconnection, measured end to end.

Starts the sandbox and the token service (revocable tokens, iat margin 5 s) under uvicorn on loopback,
creates an account, and for each run: logs in twice (two devices), connects a real client with device
A's session, then device B posts ``/logout?everywhere=true`` and the clock runs until

- ably-js (under Node, ``bench/revocation_latency.mjs``): the client reports DISCONNECTED 40141;
- ably-python: the sandbox (Ably's side) has dropped device A's transport for its revoked token
  (ably-python 3.x keeps saying CONNECTED after a 40141 whose renewal is refused, so its own state
  cannot be timed).

Prints each run, the median and the worst, per client.

    .venv/bin/python bench/revocation_latency.py --runs 20 [--clients js,python]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
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
from authserver.identity.passwords import Passwords
from authserver.sandbox import create_sandbox_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import running_server

KEY = AblyKey("benchApp.key", "bench-secret-not-real-0123456789abcdef")
COOKIE = "authserver_session"


def live(sandbox: Any, client_id: str) -> bool:
    return any(c.identity.client_id == client_id and c.transport is not None for c in list(sandbox.connections))


async def one_run(service: str, sandbox_url: str, sandbox: Any) -> float:
    async with httpx.AsyncClient() as http:
        cookies = []
        for _ in range(2):
            response = await http.post(f"{service}/login", json={"username": "alice", "password": "bench pass"})
            response.raise_for_status()
            cookies.append(response.cookies[COOKIE])
            http.cookies.clear()  # two devices: the second login must not end the first session
        client = AblyRealtime(
            auth_url=f"{service}/auth",
            auth_headers={"Cookie": f"{COOKIE}={cookies[0]}"},
            endpoint="127.0.0.1",
            port=int(sandbox_url.rsplit(":", 1)[1]),
            tls=False,
        )
        try:
            deadline = time.monotonic() + 10
            while not live(sandbox, "alice"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not connected: {client.connection.state} {client.connection.error_reason}")
                await asyncio.sleep(0.005)
            started = time.perf_counter()
            response = await http.post(
                f"{service}/logout?everywhere=true", cookies={COOKIE: cookies[1]}, headers={"Origin": service}
            )
            response.raise_for_status()
            while live(sandbox, "alice"):
                await asyncio.sleep(0.001)
            return time.perf_counter() - started
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), timeout=5)


ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / ".cache" / "node" / "node_modules"


def js_runs(service: str, sandbox_url: str, runs: int) -> list[float]:
    """The ably-js runs (seconds), by bench/revocation_latency.mjs under Node."""
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "ably").is_dir():
        raise SystemExit("ably-js runs need node and the ably npm package (scripts/setup installs both)")
    scenario = {
        "service": service,
        "port": int(sandbox_url.rsplit(":", 1)[1]),
        "username": "alice",
        "password": "bench pass",
        "runs": runs,
        "format": "json",
    }
    env = {**os.environ, "ABLY_JS_NODE_MODULES": str(NODE_MODULES), "SCENARIO": json.dumps(scenario)}
    done = subprocess.run(
        [node, str(ROOT / "bench" / "revocation_latency.mjs")], env=env, capture_output=True, text=True, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {"ok": False, "error": done.stderr[-2000:]}
    if not result["ok"]:
        raise SystemExit(f"ably-js runs failed: {result.get('error')}")
    return [ms / 1000 for ms in result["times"]]


def report(client: str, times: list[float]) -> None:
    for run, took in enumerate(times, 1):
        print(f"{client} run {run:2d}: {took * 1000:7.1f} ms", flush=True)
    print(f"{client}: logout -> disconnection over {len(times)} runs: median {statistics.median(times) * 1000:.1f} ms,")
    print(f"  worst {max(times) * 1000:.1f} ms, best {min(times) * 1000:.1f} ms", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--clients", default="js,python", help="comma-separated: js, python")
    args = parser.parse_args()
    clients = [name.strip() for name in args.clients.split(",") if name.strip()]
    websockettransport.WebSocketTransport.connect = connect_with_port
    sandbox_app = create_sandbox_app([KEY])
    with tempfile.TemporaryDirectory() as folder, running_server(sandbox_app) as sandbox_url:
        settings = load_settings(
            {
                "ABLY_API_KEY": f"{KEY.name}:{KEY.secret}",
                "ABLY_ENDPOINT": sandbox_url,
                "SESSION_SECRET": "bench-session-secret-0123456789abcdef",
                "DATABASE_URL": f"sqlite:///{Path(folder) / 'bench.db'}",
                "TOKEN_TTL": "600",
                "AUTHSERVER_LOG_LEVEL": "warning",
            },
            env_file=None,
        )
        app = create_app(settings, passwords=Passwords(time_cost=1, memory_cost=8192, parallelism=1))
        asyncio.run(app.state.services.users.add("alice", "bench pass", role=None, client_id=None, now=time.time()))
        with running_server(app) as service:
            sandbox = sandbox_app.state.sandbox
            if "js" in clients:
                report("ably-js", js_runs(service, sandbox_url, args.runs))
            if "python" in clients:
                times: list[float] = []

                async def runs() -> None:
                    for _ in range(args.runs):
                        times.append(await one_run(service, sandbox_url, sandbox))
                        await asyncio.sleep(1.1)  # each run starts in a later second than the last cutoff

                asyncio.run(runs())
                report("ably-python", times)
    return 0


if __name__ == "__main__":
    sys.exit(main())
