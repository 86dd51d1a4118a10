"""granian as the service's server: throughput beside uvicorn, and which hardening properties hold.

Not an option of ``serve`` (see ``bench/README.md``, "granian"): this is the evaluation behind that
decision, to re-run when granian changes. granian is not a dependency: ``pip install granian`` first.

    .venv/bin/python bench/granian_check.py                # wrk: hello and /auth, each under uvicorn and granian
    .venv/bin/python bench/granian_check.py --probes       # the hardening properties under granian
    .venv/bin/python bench/granian_check.py --probes --server uvicorn   # the same against `authserver serve`

The throughput run alternates wrk runs as ``ratio.py`` does (c=64, one process each, 3 rounds of
10 s): the bare Starlette hello under uvicorn (as ``ratio.py``) and under granian, ``authserver
serve`` and the same app (``authserver.server.workers:worker_app``, JSON logs at info, metrics on) under
granian. RSS is that of the process started: for granian, its supervisor, not the worker.

The probes start the app with the service's limits in granian's terms (HTTP/1, header-read timeout
10 s, 16 KiB buffer) and a descriptor limit of 512, then: a silent connection, a slowloris header
sender, a kept-alive connection left idle, a body that stops after 1 of 100 bytes, 15-500 KiB
headers, 11 bad logins each claiming another ``X-Forwarded-For``, 700 silent connections then
``/healthz``, and SIGTERM with a request in flight and a kept-alive connection open.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from auth_ratio import LUA, login, wait_ready  # noqa: E402
from ratio import AUTHSERVER, PYTHON, SHARED, Target, add_account, alternate, service_env, started, summary  # noqa: E402
from realservers import free_port  # noqa: E402

GRANIAN = str(Path(PYTHON).with_name("granian"))
#: The service's connection limits (authserver.connections' defaults) as granian's options.
GRANIAN_LIMITS = ["--http", "1", "--http1-header-read-timeout", "10000", "--http1-buffer-size", "16384"]
GRANIAN_LIMITS += ["--workers-kill-timeout", "30"]  # serving.GRACEFUL_SHUTDOWN
NOFILE = 512


def granian_argv(target: str, port: int, *extra: str) -> list[str]:
    argv = [GRANIAN, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop"]
    return [*argv, "--no-access-log", "--log-level", "warning", *extra, target]


@contextmanager
def group_started(argv: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` in a process group of its own, ended as a whole: granian's worker outlives its
    supervisor when that is killed, and ignores SIGTERM (seen here: orphans left by ``ratio.started``)."""
    with log.open("ab") as written:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=written, stderr=written, start_new_session=True)
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            pass
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def app_env(tmp: Path) -> dict[str, str]:
    """The service's environment, with the metrics directory ``serve`` would prepare."""
    metrics = tmp / "metrics"
    metrics.mkdir(exist_ok=True)
    return {**service_env(tmp), "PROMETHEUS_MULTIPROC_DIR": str(metrics)}


def throughput(args: argparse.Namespace, tmp: Path) -> None:
    lua = tmp / "done.lua"
    lua.write_text(LUA)
    ports = [free_port() for _ in range(4)]
    env = app_env(tmp)
    add_account(env)
    apps = str(SHARED / "peers" / "py")
    hello_uvicorn = [PYTHON, "-m", "uvicorn", "apps:hello", "--app-dir", apps, "--host", "127.0.0.1"]
    hello_uvicorn += ["--port", str(ports[0]), "--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    hello_granian = granian_argv("apps:hello", ports[1], "--working-dir", apps)
    app_granian = granian_argv("authserver.server.workers:worker_app", ports[3], "--factory", *GRANIAN_LIMITS)
    logs = tmp / "servers.log"
    with (
        started(hello_uvicorn, env=dict(os.environ), cwd=tmp, log=logs) as p1,
        group_started(hello_granian, env=dict(os.environ), cwd=tmp, log=logs) as p2,
        started([AUTHSERVER, "serve", "--port", str(ports[2])], env=service_env(tmp), cwd=tmp, log=logs) as p3,
        group_started(app_granian, env=env, cwd=tmp, log=logs) as p4,
    ):
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url, path in zip(urls, ("/hello", "/hello", "/healthz", "/healthz"), strict=True):
            wait_ready(url + path, 30)
        targets = [
            Target("hello uvicorn", urls[0] + "/hello", p1),
            Target("hello granian", urls[1] + "/hello", p2),
            Target("/auth uvicorn (serve)", urls[2] + "/auth", p3, f"Cookie: {login(urls[2])}"),
            Target("/auth granian", urls[3] + "/auth", p4, f"Cookie: {login(urls[3])}"),
        ]
        alternate(targets, args, lua)
        rows = [summary(t, args.connections) for t in targets]
    for row in rows:
        row["ratio_to_hello_uvicorn"] = round(row["rps"] / rows[0]["rps"], 3)
    for row in rows:
        print(json.dumps(row))


def _closed_after(sock: socket.socket, limit: float, trickle: bytes = b"") -> tuple[float | None, bytes]:
    """Seconds until the server closes ``sock`` (None: still open at ``limit``) and what it sent;
    ``trickle``: one more byte sent every second meanwhile."""
    start, got = time.monotonic(), b""
    sock.settimeout(1.0 if trickle else 0.5)
    while time.monotonic() - start < limit:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            if trickle:
                try:
                    sock.sendall(trickle)
                except OSError:
                    break
            continue
        except OSError:
            break
        if not data:
            break
        got += data
    else:
        return None, got
    return round(time.monotonic() - start, 1), got


def _status(answer: bytes) -> str:
    return answer.split(b"\r\n", 1)[0].decode(errors="replace") if answer else "nothing"


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def probes(server: str, tmp: Path) -> None:
    port = free_port()
    env = app_env(tmp)
    add_account(env)
    if server == "granian":
        argv = granian_argv("authserver.server.workers:worker_app", port, "--factory", *GRANIAN_LIMITS)
    else:
        argv = [AUTHSERVER, "serve", "--port", str(port)]
    log = tmp / "server.log"
    with log.open("wb") as written:
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=tmp,
            stdout=written,
            stderr=written,
            preexec_fn=_limit_descriptors,
            start_new_session=True,
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", 30)
        print("silent connection: closed after", _closed_after(_connect(port), 40)[0], "s", flush=True)
        sock = _connect(port)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        print("slowloris (a header byte a second): closed after", _closed_after(sock, 40, b"a")[0], "s", flush=True)
        sock = _connect(port)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        sock.recv(65536)
        print("kept-alive connection left idle: closed after", _closed_after(sock, 100)[0], "s", flush=True)
        sock = _connect(port)
        sock.sendall(
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        seconds, answer = _closed_after(sock, 40)
        closed = "still open after 40 s" if seconds is None else f"closed after {seconds} s"
        print(f"body stopping after 1 of 100 bytes: {closed}, answer: {_status(answer)}", flush=True)
        for size in (15, 17, 64, 500):
            sock = _connect(port)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size * 1024 + b"\r\n\r\n")
            seconds, answer = _closed_after(sock, 5)
            print(
                f"{size} KiB header: {_status(answer)}, {'closed' if seconds is not None else 'kept open'}", flush=True
            )
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            guess = {"username": "carol", "password": "nope"}
            codes = [
                client.post("/login", json=guess, headers={"X-Forwarded-For": f"192.0.2.{i}"}).status_code
                for i in range(11)
            ]
        print("11 bad logins, each claiming another X-Forwarded-For:", codes, flush=True)
        idle = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(700)]
        time.sleep(1)
        started_at = time.monotonic()
        try:
            sock = _connect(port)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            health = _status(sock.recv(65536))
        except OSError as exc:
            health = f"failed ({exc.__class__.__name__})"
        print(f"700 silent connections (descriptor limit {NOFILE}), then /healthz: {health}", end="")
        print(f" after {time.monotonic() - started_at:.1f} s", flush=True)
        for sock in idle:
            sock.close()
        time.sleep(1)
        body = b'{"username":"dave","password":"nopenope"}'
        sock = _connect(port)
        head = b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
        sock.sendall(head + str(len(body)).encode() + b"\r\n\r\n" + body[:12])
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        sent_at = time.monotonic()
        time.sleep(1)
        sock.sendall(body[12:])
        sock.settimeout(10)
        in_flight = _status(sock.recv(65536))  # the connection then stays open, kept alive
        try:
            process.wait(60)
            ended = f"ended {time.monotonic() - sent_at:.1f} s after"
        except subprocess.TimeoutExpired:
            ended = "still running 60 s after"
        print(f"SIGTERM with a request in flight: it got {in_flight}; the server {ended}", flush=True)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # granian's worker too, whatever the supervisor did
        process.wait(10)
    print("server log, last lines:", *log.read_text(errors="replace").splitlines()[-3:], sep="\n  ")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", action="store_true", help="the hardening probes instead of the wrk run")
    parser.add_argument("--server", choices=("granian", "uvicorn"), default="granian", help="for --probes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if not Path(GRANIAN).exists():
        print("needs granian: .venv/bin/pip install granian", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        if args.probes:
            probes(args.server, Path(tmp))
        else:
            throughput(args, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
