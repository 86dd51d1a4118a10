"""/auth throughput and latency against the plain-text ceiling, measured in the same run.

Starts the real service (bench/bench_app.py: the production app plus a /bench/hello plain-text
route, under the same uvicorn server and settings as ``authserver serve``), creates an account,
logs in, then alternates wrk runs against ``/bench/hello`` and ``/auth`` (a logged-in session,
default TokenDetails format) and prints medians and the ratio. Loopback only; bounded in time.

    .venv/bin/python bench/auth_ratio.py [--rounds 3] [--duration 10] [--connections 64]

Needs wrk (``apt-get install -y wrk``). Not a test: numbers drift with the machine, ratios in one
run are what count.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable
LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests":%d,"seconds":%.3f,"p50_ms":%.3f,"p99_ms":%.3f,'
    .. '"errors":%d,"non2xx":%d}\\n', summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise SystemExit(f"service did not answer {url} within {timeout:.0f}s")


def login(base: str) -> str:
    request = urllib.request.Request(
        f"{base}/login",
        data=json.dumps({"username": "bench", "password": "bench-password"}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        cookie: str = response.headers["set-cookie"].split(";")[0]
    return cookie


def wrk(url: str, *, connections: int, duration: int, header: str | None, lua: Path) -> dict[str, float]:
    args = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--timeout", "2s", "--latency", "-s", str(lua)]
    if header:
        args += ["-H", header]
    subprocess.run([*args[:4], "-d2s", *args[5:], url], capture_output=True, check=False, timeout=30)  # warm-up
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True, timeout=duration + 30).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRK_JSON "))
    result: dict[str, float] = json.loads(line.removeprefix("WRK_JSON "))
    result["rps"] = result["requests"] / result["seconds"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    authserver = Path(PYTHON).with_name("authserver")
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "ABLY_API_KEY": "bench.key:" + "s" * 43,
            "SESSION_SECRET": "bench-session-secret-" + "x" * 32,
            "DATABASE_URL": f"sqlite:///{tmp}/bench.db",
            "AUTHSERVER_LOG_LEVEL": "warning",
        }
        subprocess.run(
            [str(authserver), "users", "add", "bench"],
            input="bench-password\n",
            text=True,
            env=env,
            check=True,
            capture_output=True,
        )
        lua = Path(tmp) / "done.lua"
        lua.write_text(LUA)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([PYTHON, str(HERE / "bench_app.py"), str(port)], env=env, cwd=tmp)
        try:
            wait_ready(f"{base}/healthz")
            cookie = login(base)
            targets = {
                "ceiling (/bench/hello)": (f"{base}/bench/hello", None),
                "/auth": (f"{base}/auth", f"Cookie: {cookie}"),
            }
            results: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
            for round_no in range(args.rounds):
                order = list(targets) if round_no % 2 == 0 else list(reversed(targets))
                for name in order:
                    url, header = targets[name]
                    r = wrk(url, connections=args.connections, duration=args.duration, header=header, lua=lua)
                    results[name].append(r)
                    print(
                        f"round {round_no + 1} {name:<24} {r['rps']:>9.0f} req/s  p50 {r['p50_ms']:.2f} ms  "
                        f"p99 {r['p99_ms']:.2f} ms  errors {int(r['errors'])}  non2xx {int(r['non2xx'])}"
                    )
        finally:
            server.terminate()
            server.wait(10)
    print(f"\nmedians over {args.rounds} rounds, {args.connections} connections, {args.duration}s each:")
    summary: dict[str, float] = {}
    for name, runs in results.items():
        rps = statistics.median(r["rps"] for r in runs)
        p50 = statistics.median(r["p50_ms"] for r in runs)
        p99 = statistics.median(r["p99_ms"] for r in runs)
        summary[name] = rps
        print(f"  {name:<24} {rps:>9.0f} req/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms")
    ratio = summary["/auth"] / summary["ceiling (/bench/hello)"]
    print(f"  /auth / ceiling = {ratio:.2f}  (goal >= 0.50, p99 <= 10 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
