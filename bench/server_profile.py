"""Where the served ``/auth`` spends its CPU: py-spy on ``authserver serve`` under ``wrk -c64``, the
samples grouped by the code that was running, in CPU µs per request.

Starts ``authserver serve`` as ``ratio.py`` does (SQLite, everything on: metrics, JSON logs at info
with the audit line of every token, to a file), logs an account in, warms up, then records the
server with ``py-spy record --format raw`` (non-blocking, ``--rate`` Hz, idle frames left out, so a
sample is CPU time) during one wrk run. Each sample is charged to the innermost frame that belongs to
a known group (the log and audit line, metrics, signing, identity, the route, our edge, Starlette,
uvicorn with the connection guard); µs per request = samples / rate / requests in the run.

    pip install -e '.[bench]'                       # py-spy
    .venv/bin/python bench/server_profile.py [--duration 10] [--rate 250] [--connections 64]

Needs wrk and py-spy (root, or ptrace allowed). Not a test: the groups' shares are the point.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from auth_ratio import LUA, login, wait_ready  # noqa: E402
from ratio import AUTHSERVER, add_account, service_env, started  # noqa: E402
from realservers import free_port  # noqa: E402

PY_SPY = str(Path(sys.executable).with_name("py-spy"))
#: Innermost frame first: the first group whose pattern a frame's file matches takes the sample.
GROUPS = [
    ("log and audit line", re.compile(r"logging/|authserver/logs\.py|authserver/audit\.py")),
    ("metrics", re.compile(r"prometheus_client/|authserver/metrics\.py")),
    ("signing and issuance", re.compile(r"authserver/(tokens|issuance|capabilities|keys)\.py")),
    ("identity (session memory, cookie)", re.compile(r"authserver/identity/")),
    ("the /auth route (params, response)", re.compile(r"authserver/(routes|params|responses)\.py")),
    ("authserver's edge layer", re.compile(r"authserver/(edge|middleware|forwarding)\.py")),
    ("Starlette (app, Request, Response)", re.compile(r"starlette/")),
    ("uvicorn's protocol, socket writes, connection guard", re.compile(r"uvicorn/|authserver/connections\.py")),
]


def group(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        for name, pattern in GROUPS:
            if pattern.search(frame):
                return name
    return "the event loop (uvloop) and the rest"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rate", type=int, default=250)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None or not Path(PY_SPY).exists():
        print("needs wrk and py-spy: apt-get install -y wrk; pip install -e '.[bench]'", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        env = service_env(tmp)
        add_account(env)
        lua = tmp / "done.lua"
        lua.write_text(LUA)
        port = free_port()
        raw = tmp / "samples.txt"
        with started([AUTHSERVER, "serve", "--port", str(port)], env=env, cwd=tmp, log=tmp / "serve.log") as service:
            base = f"http://127.0.0.1:{port}"
            wait_ready(f"{base}/healthz", 30)
            cookie = login(base)
            wrk = ["wrk", "-t2", f"-c{args.connections}", "--timeout", "2s", "--latency", "-s", str(lua)]
            wrk += ["-H", f"Cookie: {cookie}"]
            subprocess.run([*wrk, "-d2s", f"{base}/auth"], capture_output=True, check=False, timeout=60)  # warm-up
            spy = [PY_SPY, "record", "-p", str(service.pid), "-f", "raw", "-r", str(args.rate)]
            spy += ["-d", str(args.duration), "-o", str(raw), "--nonblocking"]
            recorder = subprocess.Popen(spy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out = subprocess.run(
                [*wrk, f"-d{args.duration}s", f"{base}/auth"],
                capture_output=True,
                text=True,
                check=True,
                timeout=args.duration + 60,
            ).stdout
            recorder.wait(args.duration + 60)
        result = json.loads(next(ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")).removeprefix("WRK_JSON "))
        counts: collections.Counter[str] = collections.Counter()
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            counts[group(stack)] += int(count)
    total = sum(counts.values())
    per_request = 1e6 / args.rate / result["requests"]
    rps = result["requests"] / result["seconds"]
    print(f"/auth {rps:.0f} req/s, p99 {result['p99_ms']:.2f} ms; {total} samples; CPU µs per request:")
    for name, samples in counts.most_common():
        print(f"  {name:55s} {samples * per_request:6.1f} µs  {samples / total:6.1%}")
    print(f"  {'total':55s} {total * per_request:6.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
