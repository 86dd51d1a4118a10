"""``GET /metrics``: what it counts after real requests, and sums across processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from conftest import Service, ServiceFactory


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_tokens_logins_and_latency_by_route(service: Service) -> None:
    service.add_user("alice")
    client = service.client
    assert client.post("/login", json={"username": "alice", "password": "wrong"}).status_code == 401
    service.login("alice")
    assert client.get("/auth").status_code == 200
    assert client.get("/auth", params={"format": "jwt"}).status_code == 200
    assert client.post("/auth", data={"format": "tokenrequest"}).status_code == 200
    assert client.get("/auth", params={"clientId": "bob"}).status_code == 403
    assert client.get("/nowhere/with/a/long/path").status_code == 404
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text

    assert value(text, "authserver_tokens_issued_total", format="details", source="account") == 1
    assert value(text, "authserver_tokens_issued_total", format="jwt", source="account") == 1
    assert value(text, "authserver_tokens_issued_total", format="tokenrequest", source="account") == 1
    assert value(text, "authserver_tokens_refused_total", code="40102", format="default") == 1
    assert value(text, "authserver_logins_total", outcome="success") == 1
    assert value(text, "authserver_logins_total", outcome="failed") == 1
    count = "authserver_request_duration_seconds_count"
    assert value(text, count, route="/auth", method="GET", status="200") == 2
    assert value(text, count, route="/auth", method="POST", status="200") == 1
    assert value(text, count, route="/auth", method="GET", status="403") == 1
    # Raw paths never become labels: bounded cardinality.
    assert value(text, count, route="unmatched", method="GET", status="404") == 1
    assert "/nowhere" not in text


def test_a_throttled_login_is_counted(service: Service) -> None:
    for _ in range(11):
        service.client.post("/login", json={"username": "alice", "password": "wrong"})
    text = service.client.get("/metrics").text
    assert value(text, "authserver_logins_total", outcome="failed") == 10
    assert value(text, "authserver_logins_total", outcome="throttled") == 1
    assert value(text, "authserver_throttled_requests_total", endpoint="/login") == 1


def test_store_redis_and_jwks_hooks_are_exposed(service: Service) -> None:
    metrics = service.client.app.state.metrics  # type: ignore[attr-defined]
    metrics.store_error("sessions.create")
    metrics.redis_error("throttle")
    metrics.jwks_fetch("ok")
    text = service.client.get("/metrics").text
    assert value(text, "authserver_store_errors_total", operation="sessions.create") == 1
    assert value(text, "authserver_redis_errors_total", operation="throttle") == 1
    assert value(text, "authserver_jwks_fetches_total", outcome="ok") == 1


_WRITER = """
import sys
from pathlib import Path
from authserver.infra.metrics import Metrics
metrics = Metrics(multiprocess_dir=Path(sys.argv[1]))
for _ in range(int(sys.argv[2])):
    metrics.token_issued("jwt", "account")
metrics.request_observed("/auth", "GET", 200, 0.003)
"""
_READER = """
import sys
from pathlib import Path
from authserver.infra.metrics import Metrics
sys.stdout.write(Metrics(multiprocess_dir=Path(sys.argv[1])).render()[0].decode())
"""


def test_values_written_by_several_processes_are_summed(tmp_path: Path) -> None:
    """What ``serve --workers N`` relies on: each worker writes its own files, any worker renders all."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    for count in ("3", "4"):
        subprocess.run([sys.executable, "-c", _WRITER, str(tmp_path), count], check=True, timeout=60, env=env)
    assert len(list(tmp_path.glob("*.db"))) >= 2  # one set of files per process
    text = subprocess.run(
        [sys.executable, "-c", _READER, str(tmp_path)], check=True, timeout=60, capture_output=True, text=True, env=env
    ).stdout
    assert value(text, "authserver_tokens_issued_total", format="jwt", source="account") == 7
    count = "authserver_request_duration_seconds_count"
    assert value(text, count, route="/auth", method="GET", status="200") == 2


METRICS_TOKEN = "metrics-scrape-token-0123456789-abcdef"


def test_with_a_metrics_token_metrics_want_it_as_a_bearer_token(make_service: ServiceFactory) -> None:
    """RFC 6750: no token and a wrong token are both 401 with a Bearer challenge (what Prometheus'
    ``authorization`` scrape setting answers); the right one, compared in constant time, gets the metrics."""
    client = make_service(AUTHSERVER_METRICS_TOKEN=METRICS_TOKEN).client
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="metrics"'
    assert "authserver_" not in missing.text
    for wrong in ("Bearer " + METRICS_TOKEN[:-1] + "X", "Bearer " + METRICS_TOKEN + "X", "Basic " + METRICS_TOKEN):
        refused = client.get("/metrics", headers={"Authorization": wrong})
        assert refused.status_code == 401, wrong
        assert refused.headers["www-authenticate"] == 'Bearer realm="metrics", error="invalid_token"'
        assert "authserver_" not in refused.text
    scraped = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200
    assert "# HELP authserver_logins_total" in scraped.text
    # The probes stay open: only /metrics wants the token.
    assert client.get("/healthz").status_code == 200


def test_without_a_metrics_token_metrics_stay_open(service: Service) -> None:
    assert service.client.get("/metrics").status_code == 200
