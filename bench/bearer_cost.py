"""In-process cost of one ``/auth`` request: session cookie vs upstream bearer token.

Starts the test provider (``tests/oidc/provider.mjs``: oidc-provider under Node) for its keys, builds
the production app trusting it, and drives the ASGI app directly (no HTTP, no server): the same
middleware, routing, identity and signing as a served request. Prints microseconds per request for

- ``/auth`` with a session cookie (a session resolved moments ago: the hot path);
- ``/auth`` with a bearer token seen before (answered from the cache of verified tokens);
- ``/auth`` with a bearer token never seen before (full verification: ES256, RS256, EdDSA).

    .venv/bin/python bench/bearer_cost.py [--requests 3000]

Not a test: numbers drift with the machine; compare the rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from profile_auth import call as asgi_get

from authserver.config import load_settings
from authserver.http.app import create_app

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / ".cache" / "node" / "node_modules"
AUDIENCE = "https://chat.authserver.test"
API_KEY = "appId.keyId:bench-secret-0123456789-abcdefghijklmnop"


def start_provider() -> tuple[subprocess.Popen[str], dict[str, Any]]:
    scenario = {
        "audience": AUDIENCE,
        "pageClientId": "page",
        "pageClientSecret": "page-secret-0123456789-abcdefghijklmn",
        "workerClientId": "worker",
        "workerClientSecret": "worker-secret-0123456789-abcdefghijkl",
    }
    env = {**os.environ, "ABLY_JS_NODE_MODULES": str(NODE_MODULES), "SCENARIO": json.dumps(scenario)}
    process = subprocess.Popen(
        ["node", str(ROOT / "tests" / "oidc" / "provider.mjs")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())


def mint(announced: dict[str, Any], kty: str, sub: str) -> str:
    jwk = next(k for k in announced["keys"] if k["kty"] == kty)
    now = int(time.time())
    claims = {"iss": announced["issuer"], "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 3600}
    return jwt.encode(claims, jwt.PyJWK(jwk).key, algorithm=jwk["alg"], headers={"kid": jwk["kid"]})


async def call(app: Any, headers: list[tuple[bytes, bytes]]) -> int:
    return await asgi_get(app, "/auth", headers)


async def per_request(app: Any, make_headers: Callable[[int], list[tuple[bytes, bytes]]], n: int) -> float:
    batch = [make_headers(i) for i in range(n)]
    assert await call(app, batch[0]) == 200
    started = time.perf_counter()
    for headers in batch:
        await call(app, headers)
    return (time.perf_counter() - started) / n * 1e6


async def run(app: Any, announced: dict[str, Any], n: int) -> list[tuple[str, float]]:
    lifespan_done = asyncio.Event()
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await messages.put({"type": "lifespan.startup"})

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            lifespan_done.set()

    lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, messages.get, send))
    await lifespan_done.wait()
    services = app.state.services
    identity = await services.users.demo_login("bench", "x")
    cookie = await services.sessions.create(identity, time.time())
    await services.upstream.prefetch()
    cookie_header = [(b"cookie", f"authserver_session={cookie}".encode())]
    repeated = [(b"authorization", f"Bearer {mint(announced, 'EC', 'alice')}".encode())]
    rows = [
        ("cookie /auth (session remembered)", await per_request(app, lambda i: cookie_header, n)),
        ("bearer /auth (token verified before)", await per_request(app, lambda i: repeated, n)),
    ]
    for kty, alg in (("EC", "ES256"), ("RSA", "RS256"), ("OKP", "EdDSA")):
        fresh = [[(b"authorization", f"Bearer {mint(announced, kty, f'user{i}')}".encode())] for i in range(n // 3)]
        rows.append((f"bearer /auth (new token, {alg})", await per_request(app, fresh.__getitem__, n // 3)))
    await messages.put({"type": "lifespan.shutdown"})
    await lifespan
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    process, announced = start_provider()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(
                {
                    "ABLY_API_KEY": API_KEY,
                    "SESSION_SECRET": "bench-session-secret-0123456789-abcdefgh",
                    "DATABASE_URL": f"sqlite:///{tmp}/bench.db",
                    "AUTHSERVER_DEMO_LOGIN": "true",
                    "AUTHSERVER_LOG_LEVEL": "warning",
                    "OIDC_ISSUER": announced["issuer"],
                    "OIDC_AUDIENCE": AUDIENCE,
                },
                env_file=None,
            )
            app = create_app(settings)
            rows = asyncio.run(run(app, announced, args.requests))
    finally:
        process.terminate()
        process.wait(10)
    for name, micros in rows:
        print(f"{name:40s} {micros:8.1f} µs/request")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
