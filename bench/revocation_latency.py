"""Time from a logout to the live connection's disconnection, measured end to end.

Starts the sandbox and the token service (revocable tokens, iat margin 5 s) under uvicorn on loopback,
creates an account, and for each run: logs in twice (two devices), connects the real ably-python client
with device A's session, then device B posts ``/logout?everywhere=true`` and the clock runs until the
sandbox (Ably's side) has dropped device A's transport for its revoked token. Prints each run, the
median and the worst.

    .venv/bin/python bench/revocation_latency.py --runs 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from ably import AblyRealtime
from ably.transport import websockettransport

from authserver.app import create_app
from authserver.config import load_settings
from authserver.identity.passwords import Passwords
from authserver.keys import AblyKey
from authserver.sandbox import create_sandbox_app
from authserver.smoke import connect_with_port

KEY = AblyKey("benchApp.key", "bench-secret-not-real-0123456789abcdef")
COOKIE = "authserver_session"


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    websockettransport.WebSocketTransport.connect = connect_with_port
    sandbox_app = create_sandbox_app([KEY])
    with tempfile.TemporaryDirectory() as folder, serving(sandbox_app) as sandbox_url:
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
        with serving(app) as service:
            sandbox = sandbox_app.state.sandbox
            times: list[float] = []

            async def runs() -> None:
                for run in range(args.runs):
                    took = await one_run(service, sandbox_url, sandbox)
                    times.append(took)
                    print(f"run {run + 1:2d}: {took * 1000:7.1f} ms", flush=True)
                    await asyncio.sleep(1.1)  # each run starts in a later second than the last cutoff

            asyncio.run(runs())
    print(f"logout -> disconnection over {len(times)} runs: median {statistics.median(times) * 1000:.1f} ms,")
    print(f"  worst {max(times) * 1000:.1f} ms, best {min(times) * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
