"""The open-loop generator of ``bench/openloop.py`` (``bench/loadgen.c``), against a small real server
on loopback: requests go out on their schedule whatever the answers, every request ends in exactly
one record, and what the benchmark reports is read off those records.

The schedule is checked by when each request was due (exact, whatever the machine's speed), never by
how long anything took.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import openloop  # noqa: E402

COMPILER = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(COMPILER is None, reason="needs a C compiler to build bench/loadgen.c")

Record = tuple[int, int, int, int, int, int]  # due ns, latency ns, status, outcome, probe, step


class Server:
    """HTTP/1.1 on a free loopback port: ``/ok`` 200, ``/alternate`` 200 and 503 in turn (keep-alive),
    ``/close`` 200 then closes, ``/never`` reads the request and never answers; on each connection,
    ``/once`` answers the first request and closes at the second without a byte (a kept-alive
    connection the server let go), ``/truncate`` answers the first and sends half of the second."""

    def __init__(self) -> None:
        self.port = 0
        self.alternated = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def __enter__(self) -> Server:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with await asyncio.start_server(self._client, "127.0.0.1", 0) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served_here = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                served_here += 1
                if path == b"/never":
                    await reader.read()  # until the client gives up
                    break
                if path == b"/once" and served_here == 2:
                    break
                if path == b"/truncate" and served_here == 2:
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 50)
                    await writer.drain()
                    break
                self.alternated += path == b"/alternate"
                status = b"503 Service Unavailable" if path == b"/alternate" and self.alternated % 2 == 0 else b"200 OK"
                body = b'{"ok":true}'
                close = path == b"/close"
                writer.write(
                    b"HTTP/1.1 "
                    + status
                    + b"\r\ncontent-type: application/json\r\ncontent-length: "
                    + str(len(body)).encode()
                    + (b"\r\nconnection: close" if close else b"")
                    + b"\r\n\r\n"
                    + body
                )
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            await writer.wait_closed()


@pytest.fixture(scope="module")
def loadgen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tmp_path_factory.mktemp("loadgen") / "loadgen"
    assert COMPILER is not None
    subprocess.run([COMPILER, "-O2", "-Wall", "-Werror", "-o", str(built), str(openloop.LOADGEN_SOURCE)], check=True)
    return built


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as running:
        yield running


def run(loadgen: Path, tmp_path: Path, port: int, path: str, *extra: str) -> list[Record]:
    out = tmp_path / "records.bin"
    done = subprocess.run(
        [str(loadgen), "--port", str(port), "--path", path, *extra, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "loadgen: steps begin" in done.stderr
    return list(openloop.RECORD.iter_unpack(out.read_bytes()))


def test_requests_are_due_on_a_fixed_schedule_and_each_ends_in_one_record(
    loadgen: Path, tmp_path: Path, server: Server
) -> None:
    records = run(
        loadgen,
        tmp_path,
        server.port,
        "/alternate",
        "--step",
        "100:1",
        "--step",
        "200:0.5",
        "--probe-path",
        "/ok",
        "--probe-rate",
        "10",
    )
    requests = [r for r in records if not r[4]]
    probes = [r for r in records if r[4]]
    # 100/s for 1 s, then 200/s for 0.5 s: request i of a step is due at its start + i / rate
    assert sorted(r[0] for r in requests if r[5] == 0) == [i * 10_000_000 for i in range(100)]
    assert sorted(r[0] for r in requests if r[5] == 1) == [1_000_000_000 + i * 5_000_000 for i in range(100)]
    assert sorted(r[0] for r in probes) == [i * 100_000_000 for i in range(15)]
    assert {r[3] for r in records} == {openloop.ANSWERED}
    assert {r[2] for r in probes} == {200}
    assert Counter(r[2] for r in requests) == {200: 100, 503: 100}


def test_a_request_with_no_free_connection_is_unsent_and_one_never_answered_times_out(
    loadgen: Path, tmp_path: Path, server: Server
) -> None:
    records = run(loadgen, tmp_path, server.port, "/never", "--step", "100:1", "--max-conns", "5", "--timeout", "0.5")
    outcomes = Counter(r[3] for r in records)
    # The first five take the five connections and are never answered: every request due in the next
    # half second finds none free. Each of the five times out at its due time + 0.5 s and its
    # connection is closed; the next five due take new ones, and time out after the last step.
    assert outcomes == {openloop.TIMED_OUT: 10, openloop.UNSENT: 90}
    timed_out = sorted(r[0] for r in records if r[3] == openloop.TIMED_OUT)
    assert timed_out[:5] == [i * 10_000_000 for i in range(5)]
    assert all(500_000_000 <= due < 1_000_000_000 for due in timed_out[5:])
    assert all(r[1] >= 500_000_000 for r in records if r[3] == openloop.TIMED_OUT)


def test_a_connection_the_server_closes_is_replaced(loadgen: Path, tmp_path: Path, server: Server) -> None:
    records = run(loadgen, tmp_path, server.port, "/close", "--step", "50:1", "--max-conns", "4")
    assert len(records) == 50
    assert Counter((r[3], r[2]) for r in records) == {(openloop.ANSWERED, 200): 50}


def test_a_kept_alive_connection_closed_before_the_answer_is_retried_once_on_a_new_one(
    loadgen: Path, tmp_path: Path, server: Server
) -> None:
    # one connection at a time: every second request meets a connection the server let go
    records = run(loadgen, tmp_path, server.port, "/once", "--step", "20:1", "--max-conns", "1")
    assert Counter((r[3], r[2]) for r in records) == {(openloop.ANSWERED, 200): 20}


def test_an_answer_cut_short_is_an_error_and_is_not_sent_again(loadgen: Path, tmp_path: Path, server: Server) -> None:
    records = run(loadgen, tmp_path, server.port, "/truncate", "--step", "10:1", "--max-conns", "1")
    assert Counter(r[3] for r in records) == {openloop.ANSWERED: 5, openloop.FAILED: 5}


def test_a_refused_connection_is_an_error_not_an_unsent_request(loadgen: Path, tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connections are refused
        records = run(loadgen, tmp_path, port, "/ok", "--step", "20:0.5")
    assert Counter(r[3] for r in records) == {openloop.FAILED: 10}


def test_the_closed_loop_splits_warm_up_and_measured_requests(loadgen: Path, tmp_path: Path, server: Server) -> None:
    records = run(loadgen, tmp_path, server.port, "/ok", "--conns", "4", "--warmup", "0.2", "--seconds", "0.3")
    warm_up = [r for r in records if r[5] == 0]
    measured = [r for r in records if r[5] == 1]
    assert warm_up and measured
    assert all(r[0] < 200_000_000 for r in warm_up) and all(200_000_000 <= r[0] < 500_000_000 for r in measured)
    assert {(r[3], r[2]) for r in records} == {(openloop.ANSWERED, 200)}


def test_the_report_reads_the_records_as_it_reads_k6s_metrics() -> None:
    steps = openloop.plan_steps(100.0, step_seconds=2, recovery_seconds=2)
    half = next(s for s in steps if s.label == "0.5x")
    storm = next(s for s in steps if s.label == "2x")
    ms = 1_000_000
    due = half.start * 1_000_000_000
    records: list[Record] = [
        (due, 2 * ms, 200, openloop.ANSWERED, 0, steps.index(half)),
        (due + 1_500_000_000, 4 * ms, 200, openloop.ANSWERED, 0, steps.index(half)),
        (due + 1_600_000_000, 0, 0, openloop.UNSENT, 0, steps.index(half)),
        (storm.start * 1_000_000_000, 3 * ms, 503, openloop.ANSWERED, 0, steps.index(storm)),
        (storm.start * 1_000_000_000, 10_000 * ms, 0, openloop.TIMED_OUT, 0, steps.index(storm)),
        (storm.start * 1_000_000_000, 1 * ms, 200, openloop.ANSWERED, 1, steps.index(storm)),
        (storm.start * 1_000_000_000, 1 * ms, 0, openloop.FAILED, 1, steps.index(storm)),
    ]
    m = openloop.loadgen_metrics(records, steps)
    assert m[f"{half.id}_n_200"] == 2 and m[f"{half.id}_lat_200"]["max"] == 4.0
    assert m[f"{half.id}_lat_200"]["med"] == 3.0  # interpolated between the two
    assert m[f"dropped_iterations{{scenario:{half.id}}}"] == 1
    # by 1-second window of when they were due: the unsent one is bad in the second window
    assert m[f"win_lat_200{{step:{half.id},w:0}}"]["count"] == 1
    assert m[f"win_n_bad{{step:{half.id},w:1}}"] == 1
    assert m[f"{storm.id}_n_503"] == 1 and m[f"{storm.id}_n_timeout"] == 1
    assert m[f"{storm.id}_probe"]["count"] == 1 and m[f"{storm.id}_probe_bad"] == 1
