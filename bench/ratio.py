"""/auth against the framework's own ceiling and the Node peer, side by side in one run.

Starts, on loopback ports:

- ``hello``: the bare Starlette ceiling, ``apps:hello`` of ``../shared/bench/peers/py/apps.py`` (a
  ``PlainTextResponse``, no middleware) under the same uvicorn, uvloop and httptools as the service
  (this virtualenv's), access log off;
- ``node-keyobject``: ``../shared/bench/peers/node/server.js`` (Express + jsonwebtoken, the secret as
  a KeyObject), its dependencies installed into a cache outside the repository as ``peers.sh`` does
  (``BENCH_CACHE``, default ``$TMPDIR/auth-bench-cache``);
- ``authserver``: ``authserver serve`` as a user runs it: an account logged in, ``/auth`` with the
  session cookie, default format, metrics on, JSON logs at info with the audit line of every token
  (to a file).

It alternates wrk runs between them (``--rounds``, each round starting with another target; 2
threads, ``--connections``, a warm-up first) and prints one JSON line per target: medians of rps,
p50, p99, the sums of socket errors and non-2xx answers, RSS after the load, and the ratios.

    .venv/bin/python bench/ratio.py                      # cookie /auth vs hello vs Node, c=64, 3 rounds
    .venv/bin/python bench/ratio.py --mode bearer        # + /auth with RS256 and ES256 upstream tokens
    .venv/bin/python bench/ratio.py --mode workers       # --workers 2, c=256, 60 s: SQLite, PostgreSQL + Redis

Needs wrk, node and npm (and for ``workers`` postgresql and redis-server). Loopback only. Not a
test: the load generator shares the cores with the servers, so compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "bench"  # NOTE: referenced, not copied (../shared/bench)
sys.path.insert(0, str(ROOT / "tests"))

from auth_ratio import LUA, login, wait_ready  # noqa: E402
from bearer_cost import mint, start_provider  # noqa: E402
from realservers import Postgres, Redis, free_port, postgres_bin  # noqa: E402
from scale_out import run as run_scaled  # noqa: E402

PYTHON = sys.executable
AUTHSERVER = str(Path(PYTHON).with_name("authserver"))
CACHE = Path(os.environ.get("BENCH_CACHE") or Path(tempfile.gettempdir()) / "auth-bench-cache")
API_KEY = "bench.key:" + "s" * 43


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def node_modules() -> Path:
    """The Node peer's dependencies, installed once into the cache (never into the repository)."""
    target = CACHE / "node"
    target.mkdir(parents=True, exist_ok=True)
    package = SHARED / "peers" / "node" / "package.json"
    if not (target / "node_modules").is_dir() or (target / "package.json").read_bytes() != package.read_bytes():
        shutil.copy(package, target / "package.json")
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=target, check=True, timeout=600
        )
    return target / "node_modules"


class Target:
    def __init__(self, name: str, url: str, process: subprocess.Popen[bytes], header: str | None = None) -> None:
        self.name, self.url, self.process, self.header = name, url, process, header
        self.runs: list[dict[str, float]] = []


@contextmanager
def started(argv: list[str], *, env: dict[str, str], cwd: Path | None, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as written:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=written, stderr=written)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def wrk(target: Target, *, connections: int, duration: int, warmup: int, lua: Path) -> dict[str, float]:
    args = ["wrk", "-t2", f"-c{connections}", "--timeout", "2s", "--latency", "-s", str(lua)]
    if target.header:
        args += ["-H", target.header]
    if warmup:
        subprocess.run([*args, f"-d{warmup}s", target.url], capture_output=True, check=False, timeout=warmup + 30)
    out = subprocess.run(
        [*args, f"-d{duration}s", target.url], capture_output=True, text=True, check=True, timeout=duration + 60
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRK_JSON "))
    result: dict[str, float] = json.loads(line.removeprefix("WRK_JSON "))
    result["rps"] = result["requests"] / result["seconds"]
    return result


def alternate(targets: list[Target], args: argparse.Namespace, lua: Path) -> None:
    for round_no in range(args.rounds):
        for k in range(len(targets)):
            target = targets[(k + round_no) % len(targets)]
            r = wrk(target, connections=args.connections, duration=args.duration, warmup=args.warmup, lua=lua)
            target.runs.append(r)
            print(
                f"round {round_no + 1} {target.name:<22} {r['rps']:>9.0f} req/s  p50 {r['p50_ms']:.2f} ms  "
                f"p99 {r['p99_ms']:.2f} ms  errors {int(r['errors'])}  non-2xx {int(r['non2xx'])}",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(1)


def summary(target: Target, connections: int) -> dict[str, Any]:
    runs = target.runs
    return {
        "target": target.name,
        "conns": connections,
        "rounds": len(runs),
        "rps": round(statistics.median(r["rps"] for r in runs), 1),
        "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 2),
        "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 2),
        "errors": int(sum(r["errors"] for r in runs)),
        "non2xx": int(sum(r["non2xx"] for r in runs)),
        "rps_per_round": [round(r["rps"]) for r in runs],
        "rss_mib": rss_mib(target.process.pid),
    }


def service_env(tmp: Path, **extra: str) -> dict[str, str]:
    # NOTE: run from a temporary folder (cwd), so that no .env of the checkout is read.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSERVER_", "OIDC_", "PROMETHEUS_"))}
    env.update(
        {
            "ABLY_API_KEY": API_KEY,
            "SESSION_SECRET": "bench-session-secret-" + "x" * 32,
            "DATABASE_URL": f"sqlite:///{tmp}/bench.db",
            "AUTHSERVER_LOG_LEVEL": "info",  # everything on: the audit line of every token, as JSON
            "AUTHSERVER_LOG_FORMAT": "json",
        }
    )
    env.update(extra)
    return env


def add_account(env: dict[str, str]) -> None:
    subprocess.run(
        [AUTHSERVER, "users", "add", "bench"],
        input=b"bench-password\n",
        env=env,
        cwd=tempfile.gettempdir(),
        check=True,
        capture_output=True,
    )


def side_by_side(args: argparse.Namespace, tmp: Path, lua: Path) -> list[dict[str, Any]]:
    hello_port, node_port, port = free_port(), free_port(), free_port()
    logs = tmp / "servers.log"
    modules = node_modules()
    env = service_env(tmp)
    add_account(env)
    hello_argv = [PYTHON, "-m", "uvicorn", "apps:hello", "--app-dir", str(SHARED / "peers" / "py")]
    hello_argv += ["--host", "127.0.0.1", "--port", str(hello_port), "--loop", "uvloop", "--http", "httptools"]
    hello_argv += ["--no-access-log", "--log-level", "warning"]
    node_env = {**os.environ, "PORT": str(node_port), "KEYOBJECT": "1", "NODE_PATH": str(modules)}
    with (
        started(hello_argv, env=dict(os.environ), cwd=tmp, log=logs) as hello,
        started(["node", "server.js"], env=node_env, cwd=SHARED / "peers" / "node", log=logs) as node,
        started([AUTHSERVER, "serve", "--port", str(port)], env=env, cwd=tmp, log=tmp / "serve.log") as service,
    ):
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"http://127.0.0.1:{hello_port}/hello", 30)
        wait_ready(f"http://127.0.0.1:{node_port}/hello", 30)
        wait_ready(f"{base}/healthz", 30)
        cookie = login(base)
        targets = [
            Target("hello", f"http://127.0.0.1:{hello_port}/hello", hello),
            Target("node-keyobject", f"http://127.0.0.1:{node_port}/auth?clientId=bench", node),
            Target("authserver /auth", f"{base}/auth", service, f"Cookie: {cookie}"),
        ]
        if args.healthz:
            targets.append(Target("authserver /healthz", f"{base}/healthz", service))
        provider = None
        if args.mode == "bearer":
            provider, announced = start_provider()
            service.terminate()
            service.wait(30)
            env = service_env(tmp, OIDC_ISSUER=announced["issuer"], OIDC_AUDIENCE="https://chat.authserver.test")
            service = subprocess.Popen(  # the same service, now trusting the provider
                [AUTHSERVER, "serve", "--port", str(port)],
                env=env,
                cwd=tmp,
                stdout=(tmp / "serve.log").open("ab"),
                stderr=subprocess.STDOUT,
            )
            wait_ready(f"{base}/healthz", 30)
            cookie = login(base)
            targets = [
                Target("authserver /auth", f"{base}/auth", service, f"Cookie: {cookie}"),
                Target("bearer RS256", f"{base}/auth", service, f"Authorization: Bearer {mint(announced, 'RSA', 'r')}"),
                Target("bearer ES256", f"{base}/auth", service, f"Authorization: Bearer {mint(announced, 'EC', 'e')}"),
            ]
        try:
            alternate(targets, args, lua)
            rows = [summary(t, args.connections) for t in targets]
        finally:
            if provider is not None:
                service.terminate()
                service.wait(30)
                provider.terminate()
                provider.wait(10)
    audit = sum(1 for line in (tmp / "serve.log").open(errors="replace") if '"token_issued"' in line)
    by_name = {row["target"]: row for row in rows}
    for row in rows:
        for reference in ("hello", "node-keyobject", "authserver /auth"):
            if reference in by_name and reference != row["target"]:
                key = "ratio_to_" + reference.replace("authserver /auth", "cookie").replace("-", "_")
                row[key] = round(row["rps"] / by_name[reference]["rps"], 3)
        if row["target"].startswith(("authserver", "bearer")):
            row["audit_lines_logged"] = audit
    return rows


def scaled(args: argparse.Namespace, tmp: Path, lua: Path) -> list[dict[str, Any]]:
    rows = []
    sqlite_env = service_env(tmp)
    add_account(sqlite_env)
    engines: list[tuple[str, dict[str, str]]] = [("sqlite", sqlite_env)]
    postgres = redis = None
    if postgres_bin() is not None and shutil.which("redis-server"):
        postgres, redis = Postgres(postgres_bin()), Redis(tmp / "redis")  # type: ignore[arg-type]
        postgres.start()
        redis.start()
        postgres.psql("CREATE DATABASE bench")
        pg_env = service_env(tmp, DATABASE_URL=postgres.url("bench"), REDIS_URL=redis.url)
        subprocess.run([AUTHSERVER, "db", "upgrade"], env=pg_env, check=True, capture_output=True)
        add_account(pg_env)
        engines.append(("postgresql+redis", pg_env))
    try:
        for name, env in engines:
            log = tmp / f"serve-{name}.log"
            r, rss = run_scaled(env, workers=2, connections=256, duration=args.duration, lua=lua, log=log)
            errors = sum(1 for line in log.open(errors="replace") if '"level": "error"' in line)
            rows.append(
                {
                    "target": f"authserver /auth --workers 2 ({name})",
                    "conns": 256,
                    "duration_s": args.duration,
                    "rps": round(r["rps"], 1),
                    "p50_ms": round(r["p50_ms"], 2),
                    "p99_ms": round(r["p99_ms"], 2),
                    "errors": int(r["errors"]),
                    "non2xx": int(r["non2xx"]),
                    "rss_mib_per_worker": rss,
                    "error_lines_logged": errors,
                }
            )
    finally:
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("cookie", "bearer", "workers"), default="cookie")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, help="seconds per run (default 10; workers: 60)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--healthz", action="store_true", help="also load authserver's /healthz (its stack alone)")
    args = parser.parse_args()
    args.duration = args.duration or (60 if args.mode == "workers" else 10)
    if shutil.which("wrk") is None or shutil.which("node") is None:
        print("needs wrk and node: apt-get install -y wrk nodejs npm", file=sys.stderr)
        return 2
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        lua = Path(tmp) / "done.lua"
        lua.write_text(LUA)
        rows = scaled(args, Path(tmp), lua) if args.mode == "workers" else side_by_side(args, Path(tmp), lua)
    print(f"# load average before {load:.2f}, after {os.getloadavg()[0]:.2f}; cpus {os.cpu_count()}", file=sys.stderr)
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
