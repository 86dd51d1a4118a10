"""Slow and idle clients at full size: 1,000 idle connections plus 300 half-sent requests against
``authserver serve`` under ``ulimit -n 1024``, with the default limits (10 s to send headers).

Reports how long ``/healthz`` takes while they are held open, and how long until the server has
closed every one of them. Measured, not asserted (tests/server/test_guard.py asserts the behaviour
at a smaller size). ``--baseline`` runs the same app under uvicorn as it comes (no connection
limits), for comparison::

    .venv/bin/python bench/slow_clients.py [--idle 1000] [--half-sent 300] [--descriptors 1024] [--baseline]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AUTHSERVER = str(Path(sys.executable).with_name("authserver"))
KEY = "appId.keyId:bench-secret-0123456789-abcdefghijklmnopq"


#: The app under plain uvicorn: what ``serve`` does, less authserver.connections.
BASELINE = """
import logging
from authserver.http.app import create_app
from authserver.config import load_settings
from authserver.infra.logs import configure_logging
from authserver.server.serving import bind, run_servers, uvicorn_server
settings = load_settings()
configure_logging("info")
sock = bind("127.0.0.1", 0)
logging.getLogger("authserver").info("authserver baseline on http://127.0.0.1:%d", sock.getsockname()[1])
run_servers([(uvicorn_server(create_app(settings), "info"), [sock])])
"""


def _serve(workdir: Path, descriptors: int, baseline: bool) -> tuple[subprocess.Popen[bytes], int]:
    env = {
        "PATH": os.environ["PATH"],
        "ABLY_API_KEY": KEY,
        "SESSION_SECRET": "bench-session-secret-0123456789-abcdefgh",
        "DATABASE_URL": f"sqlite:///{workdir}/authserver.db",
        "AUTHSERVER_PORT": "0",
    }
    log = (workdir / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", BASELINE] if baseline else [AUTHSERVER, "serve"],
        env=env,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (descriptors, descriptors)),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"authserver \S+ on http://127\.0\.0\.1:(\d+)", (workdir / "serve.log").read_text())
        if found:
            try:
                socket.create_connection(("127.0.0.1", int(found[1])), timeout=1).close()
            except OSError:
                pass
            else:
                return process, int(found[1])
        time.sleep(0.1)
    process.kill()
    raise SystemExit("serve did not start:\n" + (workdir / "serve.log").read_text())


def _healthz(port: int) -> str:
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError as exc:
        return f"failed ({exc.strerror or type(exc).__name__})"
    if not answer.startswith(b"HTTP/1.1 200 "):
        return f"answered {answer[:40]!r}"
    return f"{(time.perf_counter() - started) * 1000:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--half-sent", type=int, default=300)
    parser.add_argument("--descriptors", type=int, default=1024)
    parser.add_argument("--wait", type=float, default=90.0, help="seconds to wait for the server to close them")
    parser.add_argument("--baseline", action="store_true", help="uvicorn without authserver's connection limits")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    with tempfile.TemporaryDirectory() as tmp:
        process, port = _serve(Path(tmp), args.descriptors, args.baseline)
        try:
            socks: list[socket.socket] = []
            opened = time.monotonic()
            for _ in range(args.idle):
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            for i in range(args.half_sent):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(f"POST /login HTTP/1.1\r\nHost: localhost\r\nX-Slow-{i}: ".encode())
                socks.append(sock)
            print(f"opened {args.idle} idle + {args.half_sent} half-sent in {time.monotonic() - opened:.2f} s")
            probes = [_healthz(port) for _ in range(5)]
            print(f"/healthz while held: {', '.join(probes)}")
            selector = selectors.DefaultSelector()  # epoll: descriptors past 1024
            for sock in socks:
                selector.register(sock, selectors.EVENT_READ)
            closed_at: list[float] = []
            while len(closed_at) < len(socks) and time.monotonic() - opened < args.wait:
                for key, _ in selector.select(0.5):
                    sock = key.fileobj  # type: ignore[assignment]
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        selector.unregister(sock)
                        closed_at.append(time.monotonic() - opened)
            pending = len(socks) - len(closed_at)
            print(
                f"closed by the server: {len(closed_at)} of {len(socks)};"
                f" the last after {max(closed_at, default=0):.1f} s; still open: {pending}"
            )
            print(f"/healthz afterwards: {_healthz(port)}")
            for sock in socks:
                sock.close()
        finally:
            process.terminate()
            process.wait(10)
        drops = [line for line in (Path(tmp) / "serve.log").read_text().splitlines() if "connection limits" in line]
        print("\n".join(drops))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
