"""/auth scaled out: `authserver serve --workers 2` on PostgreSQL + Redis at 256 connections, next to
one worker at 64 connections, in the same run; rps, p50, p99, errors, non-2xx and RSS per worker.

Starts its own PostgreSQL and redis-server (Debian's, as the tests do: loopback, free ports,
temporary folders, stopped at the end), creates an account, logs in, and runs wrk (2 threads)
against ``/auth`` with the session cookie (default TokenDetails format), the service at its
defaults (login throttle on, /auth limits off). Loopback only; the load generator shares the
machine's cores with the server, so compare the two lines of one run.

    .venv/bin/python bench/scale_out.py [--duration 60]

Needs wrk (``apt-get install -y wrk``), postgresql and redis-server (``scripts/setup --test``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' PostgreSQL and Redis launchers

from auth_ratio import LUA, login, wait_ready  # noqa: E402
from realservers import Postgres, Redis, free_port, postgres_bin  # noqa: E402

AUTHSERVER = str(Path(sys.executable).with_name("authserver"))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def workers_of(server: subprocess.Popen[bytes], expected: int) -> list[int]:
    """The processes that serve: the server itself (one worker) or its spawned uvicorn workers."""
    if expected == 1:
        return [server.pid]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = [pid for pid in children(server.pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        if len(pids) >= expected:
            return pids[:expected]
        time.sleep(0.2)
    raise SystemExit("workers did not start")


def run(
    env: dict[str, str], *, workers: int, connections: int, duration: int, lua: Path, log: Path
) -> tuple[dict[str, float], list[float]]:
    port = free_port()
    with log.open("ab") as written:
        server = subprocess.Popen(
            [AUTHSERVER, "serve", "--port", str(port), "--workers", str(workers)],
            env=env,
            stdout=written,
            stderr=written,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/healthz", timeout=60)
        pids = workers_of(server, workers)
        cookie = login(base)
        args = [
            "wrk",
            "-t2",
            f"-c{connections}",
            "--timeout",
            "2s",
            "--latency",
            "-s",
            str(lua),
            "-H",
            f"Cookie: {cookie}",
        ]
        subprocess.run([*args, "-d3s", f"{base}/auth"], capture_output=True, check=False, timeout=60)  # warm-up
        peak: dict[int, float] = {pid: 0.0 for pid in pids}
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(1.0):
                for pid in pids:
                    try:
                        peak[pid] = max(peak[pid], rss_mib(pid))
                    except OSError:
                        pass

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out = subprocess.run(
            [*args, f"-d{duration}s", f"{base}/auth"], capture_output=True, text=True, check=True, timeout=duration + 60
        ).stdout
        stop.set()
        sampler.join()
    finally:
        server.terminate()
        server.wait(60)
    line = next(ln for ln in out.splitlines() if ln.startswith("WRK_JSON "))
    result: dict[str, float] = json.loads(line.removeprefix("WRK_JSON "))
    result["rps"] = result["requests"] / result["seconds"]
    return result, [round(peak[pid], 1) for pid in pids]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=60)
    args = parser.parse_args()
    binaries = postgres_bin()
    if shutil.which("wrk") is None or binaries is None or shutil.which("redis-server") is None:
        print("needs wrk, postgresql and redis-server: apt-get install -y wrk postgresql redis-server", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        postgres = Postgres(binaries)
        redis = Redis(Path(tmp) / "redis")
        postgres.start()
        redis.start()
        try:
            postgres.psql("CREATE DATABASE bench")
            env = {
                **os.environ,
                "ABLY_API_KEY": "bench.key:" + "s" * 43,
                "SESSION_SECRET": "bench-session-secret-" + "x" * 32,
                "DATABASE_URL": postgres.url("bench"),
                "REDIS_URL": redis.url,
                "AUTHSERVER_LOG_LEVEL": "warning",
            }
            subprocess.run([AUTHSERVER, "db", "upgrade"], env=env, check=True, capture_output=True)
            subprocess.run(
                [AUTHSERVER, "users", "add", "bench"],
                input=b"bench-password\n",
                env=env,
                check=True,
                capture_output=True,
            )
            lua = Path(tmp) / "done.lua"
            lua.write_text(LUA)
            log = Path(tmp) / "serve.log"
            rows = [
                ("2 workers, PostgreSQL + Redis, 256 connections", 2, 256),
                ("1 worker,  PostgreSQL + Redis,  64 connections", 1, 64),
            ]
            print(f"/auth, {args.duration} s each, wrk -t2, cpus={os.cpu_count()}")
            for name, workers, connections in rows:
                r, rss = run(env, workers=workers, connections=connections, duration=args.duration, lua=lua, log=log)
                print(
                    f"  {name}: {r['rps']:>8.0f} req/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms"
                    f"  errors {int(r['errors'])}  non-2xx {int(r['non2xx'])}  RSS per worker (MiB, peak) {rss}"
                )
            problems = [ln for ln in log.read_text(errors="replace").splitlines() if "ERROR" in ln]
            print(f"  server log: {len(problems)} error line(s)" + (f", first: {problems[0]}" if problems else ""))
        finally:
            redis.stop()
            postgres.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
