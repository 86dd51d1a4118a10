"""/readyz (the database answers with the current schema; /healthz stays liveness), and a SQLite
file that is deleted or replaced under a running service, or fills up, is noticed and logged."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import authserver.http.app as app_module
from authserver.infra.logs import LogLimiter

from conftest import Service, ServiceFactory


def database_file(service: Service) -> Path:
    return Path(service.settings.database_path)


def test_ready_when_the_database_answers(service: Service) -> None:
    response = service.client.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ready", "checks": {"database": "ok"}})
    assert response.headers["cache-control"].startswith("private, no-cache")


def test_a_deleted_database_file_is_not_ready_and_logged_while_liveness_stays_ok(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    path = database_file(service)
    path.unlink()
    response = service.client.get("/readyz")
    assert response.status_code == 503
    problem = "the database file is gone (deleted or moved while the service runs)"
    assert response.json() == {"status": "not ready", "checks": {"database": problem}}  # no path: the log has it
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"not ready: database: {problem} ({path})"
    ]
    service.client.get("/readyz")  # logged once, not on every probe
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    assert service.client.get("/healthz").status_code == 200


def test_a_replaced_database_file_is_not_ready(service: Service, tmp_path: Path) -> None:
    path = database_file(service)
    (tmp_path / "elsewhere.db").write_bytes(path.read_bytes())
    os.replace(tmp_path / "elsewhere.db", path)
    response = service.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "the database file was replaced while the service runs: restart it"
    assert str(path) not in response.text and str(path.parent) not in response.text


def test_logins_after_the_database_file_was_deleted_are_refused_not_lost(
    make_service: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    service = make_service(AUTHSERVER_DEMO_LOGIN="true")
    service.add_user("alice")
    path = database_file(service)
    path.unlink()
    for _ in range(3):
        refused = service.client.post("/login", json={"username": "alice", "password": "correct horse"})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == 50300
        demo = service.client.post("/login", json={"username": "dana", "password": "x"})
        assert demo.status_code == 503
    told = [r.getMessage() for r in caplog.records if "every write is refused" in r.getMessage()]
    assert len(told) == 1 and str(path) in told[0] and "restart authserver" in told[0]
    assert service.client.get("/healthz").status_code == 200


def test_a_write_into_a_replaced_database_file_is_refused(service: Service, tmp_path: Path) -> None:
    service.add_user("alice")
    path = database_file(service)
    (tmp_path / "elsewhere.db").write_bytes(path.read_bytes())
    os.replace(tmp_path / "elsewhere.db", path)
    refused = service.client.post("/login", json={"username": "alice", "password": "correct horse"})
    assert refused.status_code == 503


def test_a_full_database_is_a_logged_503_not_a_crash(
    make_service: ServiceFactory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 503s are logged a few a minute, process-wide: a fresh allowance, whatever earlier tests used up
    monkeypatch.setattr(app_module, "_limited", LogLimiter(burst=5, interval=60.0))
    service = make_service(AUTHSERVER_DEMO_LOGIN="true")
    storage = service.client.app.state.services.storage  # type: ignore[attr-defined]
    pages = storage.db.query("PRAGMA page_count")[0][0]
    storage.db.execute(f"PRAGMA max_page_count = {pages}")  # as a full disk would: no page left to grow into
    answers = []
    for n in range(200):  # each login a session of its own (a new client each time: no previous cookie)
        service.client.cookies.clear()
        answers.append(service.client.post("/login", json={"username": f"user{n}", "password": "pw"}))
    refused = [r for r in answers if r.status_code != 200]
    assert refused and {r.status_code for r in refused} == {503}
    assert refused[0].json()["error"]["code"] == 50300
    assert any("database or disk is full" in r.getMessage() and r.levelno >= logging.WARNING for r in caplog.records)
    metrics = service.client.get("/metrics").text
    assert 'authserver_store_errors_total{operation="/login"}' in metrics
    assert service.client.get("/healthz").status_code == 200  # the process goes on
