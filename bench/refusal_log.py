"""How many log lines anonymous refusals of ``/auth`` write (issue #18, item 9).

Builds the app as ``serve`` does (production settings, SQLite in a temporary directory, JSON logs at
info), sends ``--requests`` GET /auth with no cookie, then as many with a forged session cookie, and
counts the lines and bytes the log received for each run (stderr is redirected to a file; the
test client's own request lines are turned off)::

    .venv/bin/python bench/refusal_log.py --requests 10000 [--cookie none|forged|both]

Measured 2026-12-07 on the shared 2-core machine, 10,000 requests each: before the change (every
refusal audited) 10,000 lines, 3,290,000 bytes, for no cookie and again for a forged cookie; after
(refusals with no identity: five lines a minute per Ably code), 5 lines (1,645 bytes) for 10,000
without a cookie, and 5 for 10,000 with a forged cookie run alone (``--cookie forged``; run after the
first, in the same minute and with the same code 40101, it adds none).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from starlette.testclient import TestClient

from authserver.config import load_settings
from authserver.http.app import create_app
from authserver.infra.logs import configure_logging

KEY = "appId.keyId:bench-key-secret-0123456789-abcdefghij"
SECRET = "bench-session-secret-0123456789-abcdefghij"


def _run(client: TestClient, log: Path, requests: int, cookies: dict[str, str]) -> dict[str, object]:
    before_lines, before_bytes = _count(log)
    started = time.monotonic()
    statuses: dict[int, int] = {}
    client.cookies.clear()
    for name, value in cookies.items():
        client.cookies.set(name, value)
    for _ in range(requests):
        status = client.get("/auth").status_code
        statuses[status] = statuses.get(status, 0) + 1
    lines, size = _count(log)
    loggers: dict[str, int] = {}
    for line in log.read_text(encoding="utf-8").splitlines()[before_lines:]:
        name = json.loads(line)["logger"]
        loggers[name] = loggers.get(name, 0) + 1
    return {
        "requests": requests,
        "statuses": statuses,
        "seconds": round(time.monotonic() - started, 1),
        "log_lines": lines - before_lines,
        "log_bytes": size - before_bytes,
        "lines_by_logger": loggers,
    }


def _count(log: Path) -> tuple[int, int]:
    sys.stderr.flush()
    data = log.read_bytes()
    return data.count(b"\n"), len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument(
        "--cookie", choices=("none", "forged", "both"), default="both", help="both: no cookie, then a forged one"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            {"ABLY_API_KEY": KEY, "SESSION_SECRET": SECRET, "DATABASE_URL": f"sqlite:///{tmp}/authserver.db"},
            env_file=None,
        )
        log = Path(tmp) / "stderr.log"
        real_stderr = sys.stderr
        with log.open("w", encoding="utf-8") as sink:
            sys.stderr = sink
            try:
                configure_logging("info", "json")
                for client_logger in ("httpx", "httpx2"):  # the test client's own line per request
                    logging.getLogger(client_logger).setLevel(logging.WARNING)
                with TestClient(create_app(settings), base_url="http://testserver") as client:
                    results = {}
                    if args.cookie in ("none", "both"):
                        results["no cookie"] = _run(client, log, args.requests, {})
                    if args.cookie in ("forged", "both"):
                        forged = {"authserver_session": "forged." + "x" * 40}
                        results["forged cookie"] = _run(client, log, args.requests, forged)
            finally:
                sys.stderr = real_stderr
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
