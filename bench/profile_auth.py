"""In-process cost of ``/auth`` with everything switched on, in µs, and where it goes (cProfile).

Builds the production app as ``authserver serve`` does (metrics in prometheus-client's multiprocess
mode, JSON logs at info with the audit line of every token, to a file), logs a session in, and drives
the ASGI app directly (no HTTP server): the same middleware, routing, identity, signing, metrics and
logging as a served request. Prints µs per request for ``/auth`` (session cookie, default format)
and ``/healthz``, µs per signature (the JWT alone), and with ``--profile`` the top functions by own
time.

    .venv/bin/python bench/profile_auth.py [--requests 20000] [--profile 15]

Not a test: numbers drift with the machine; compare rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from authserver.config import load_settings
from authserver.core.callers import Identity
from authserver.http.app import create_app
from authserver.infra.logs import configure_logging
from authserver.infra.metrics import Metrics, prepare_multiprocess_dir


async def call(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def timed(app: Any, path: str, headers: list[tuple[bytes, bytes]], n: int) -> float:
    assert await call(app, path, headers) == 200
    started = time.perf_counter()
    for _ in range(n):
        await call(app, path, headers)
    return (time.perf_counter() - started) / n * 1e6


async def run(app: Any, n: int, profile: int) -> None:
    started = asyncio.Event()
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})

    async def lifespan_send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, lifespan_send))
    await started.wait()
    services = app.state.services
    identity = Identity(subject="bench", client_id="bench", role="user", source="demo")
    cookie = await services.sessions.create(identity, time.time())
    headers = [(b"cookie", f"authserver_session={cookie}".encode())]
    issuer = services.issuer
    signer = issuer._signer
    capability = issuer.allowance(identity).capability_json
    t0 = time.perf_counter()
    for i in range(n):
        signer.sign(capability=capability, client_id="bench", issued_at=1_800_000_000 + i, expires_at=1_800_003_600)
    sign_us = (time.perf_counter() - t0) / n * 1e6
    rows = [
        ("JWT signature alone (TokenSigner.sign)", sign_us),
        ("/healthz (the stack, no work)", await timed(app, "/healthz", [], n)),
        ("/auth (session cookie, TokenDetails)", await timed(app, "/auth", headers, n)),
    ]
    for name, micros in rows:
        print(f"{name:42s} {micros:8.1f} µs")
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(n):
            await call(app, "/auth", headers)
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(profile)
        stats.sort_stats("cumulative").print_stats(profile * 2)
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--profile", type=int, default=0, help="print the top N functions (cProfile)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            {
                "ABLY_API_KEY": "bench.key:" + "s" * 43,
                "SESSION_SECRET": "bench-session-secret-" + "x" * 32,
                "DATABASE_URL": f"sqlite:///{tmp}/bench.db",
                "AUTHSERVER_LOG_LEVEL": "info",
                "AUTHSERVER_LOG_FORMAT": "json",
                "AUTHSERVER_DEMO_LOGIN": "true",
            },
            env_file=None,
        )
        log_file = Path(tmp) / "serve.log"
        stderr = sys.stderr
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        metrics_dir = prepare_multiprocess_dir()
        with log_file.open("w") as sink:
            sys.stderr = sink  # the JSON log lines go to a file, as a served process's stderr would
            configure_logging("info", "json")
            sys.stderr = stderr
            app = create_app(settings, metrics=Metrics(metrics_dir))
            uvloop_run(run(app, args.requests, args.profile))
        print(f"log lines written: {sum(1 for _ in log_file.open())}")


def uvloop_run(main: Any) -> None:
    import uvloop

    uvloop.run(main)


if __name__ == "__main__":
    main()
