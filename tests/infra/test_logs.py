"""Logs: JSON lines from a real ``authserver serve`` (uvicorn's own included), audit lines for every
token issued or refused, never a secret; and the rate limiter for what a client can provoke."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from pathlib import Path

import anyio
import httpx
import pytest
from starlette.requests import Request

from authserver.core.callers import Identity
from authserver.errors import NotAuthenticatedError, UnavailableError
from authserver.http import app as app_module
from authserver.http.app import _domain_error
from authserver.infra import audit as audit_module
from authserver.infra.audit import audit_issued, audit_refused
from authserver.infra.logs import (
    JsonFormatter,
    LineHandler,
    LogLimiter,
    RedactingFilter,
    RequestIdFilter,
    TextFormatter,
    redact,
    request_id,
    shown,
)
from infra.test_metrics import value

from conftest import Service
from helpers import API_KEY, AUTHSERVER, KEY_SECRET, SESSION_SECRET, FakeClock, running_authserver

PASSWORD = "correct horse battery staple 42"


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "ABLY_API_KEY": API_KEY,
        "SESSION_SECRET": SESSION_SECRET,
        "DATABASE_URL": f"sqlite:///{tmp_path}/authserver.db",
        "AUTHSERVER_PORT": "0",
        "AUTHSERVER_LOG_FORMAT": "json",
        "AUTHSERVER_LOG_LEVEL": "debug",
    }


def test_a_run_with_logins_and_tokens_logs_json_audit_lines_and_no_secret(tmp_path: Path) -> None:
    env = _env(tmp_path)
    subprocess.run(
        [AUTHSERVER, "users", "add", "alice"], input=f"{PASSWORD}\n{PASSWORD}\n", env=env, cwd=tmp_path,
        check=True, timeout=60, capture_output=True, text=True,
    )  # fmt: skip
    log = tmp_path / "serve.log"
    secrets = {PASSWORD, KEY_SECRET, SESSION_SECRET}
    with running_authserver(["serve"], env=env, cwd=tmp_path, log=log) as served:
        with httpx.Client(base_url=served.url, timeout=10) as client:
            assert client.post("/login", json={"username": "alice", "password": "wrong " + PASSWORD}).status_code == 401
            login = client.post(
                "/login", json={"username": "alice", "password": PASSWORD}, headers={"X-Request-ID": "login-1"}
            )
            assert login.status_code == 200
            secrets.add(client.cookies["authserver_session"])
            details = client.get("/auth", headers={"X-Request-ID": "auth-1"})
            secrets.add(details.json()["token"])
            secrets.add(client.get("/auth", params={"format": "jwt"}).text)
            secrets.add(client.post("/auth", data={"format": "tokenrequest"}).json()["mac"])
            assert client.get("/auth", params={"clientId": "bob"}).status_code == 403
            assert client.post("/logout").status_code == 200
            assert client.get("/auth").status_code == 403  # logged out in this browser: final for its tabs
            metrics = client.get("/metrics").text
        # uvicorn runs with forwarding headers off: loopback's X-Forwarded-For is not believed.
        with httpx.Client(base_url=served.url, timeout=10) as client:
            guess = {"username": "carol", "password": "nope"}
            codes = [
                client.post("/login", json=guess, headers={"X-Forwarded-For": f"192.0.2.{i}"}).status_code
                for i in range(11)
            ]
        assert codes == [401] * 10 + [429]
    text = log.read_text(encoding="utf-8")
    for secret in secrets:
        assert secret not in text
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is one JSON object
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys()
    assert any(e["logger"].startswith("uvicorn") for e in entries)
    issued = [e for e in entries if e.get("event") == "token_issued"]
    assert sorted(e["format"] for e in issued) == ["details", "jwt", "tokenrequest"]
    first = next(e for e in issued if e["requestId"] == "auth-1")
    assert first["clientId"] == "alice" and first["role"] == "user" and first["source"] == "account"
    assert first["ttl"] == 3600 and "chat:*" in json.loads(first["capability"])
    refused = [e for e in entries if e.get("event") == "token_refused"]
    assert sorted(e["code"] for e in refused) == [40102, 40304]
    assert all(e["requestId"] for e in refused)
    assert any(e.get("requestId") == "login-1" and "login:" in e["message"] for e in entries)
    # The service's own /metrics (multiprocess mode, as serve sets it up) counted the same run.
    assert value(metrics, "authserver_tokens_issued_total", format="jwt", source="account") == 1
    assert value(metrics, "authserver_logins_total", outcome="success") == 1


@contextmanager
def json_audit_log() -> Iterator[tuple[logging.Logger, StringIO]]:
    """The audit logger with JSON lines to a buffer, as ``configure_logging`` sets up stderr, and no
    other handler (entered in the test: pytest's capture joins non-propagating loggers at set-up)."""
    stream = StringIO()
    handler = LineHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("authserver.audit")
    saved = logger.handlers, logger.propagate, logger.level, logger.disabled
    logger.handlers, logger.propagate, logger.disabled = [handler], False, False
    logger.setLevel(logging.INFO)  # NOTE: setLevel, which clears the loggers' cached isEnabledFor answers
    try:
        yield logger, stream
    finally:
        logger.handlers, logger.propagate, _, logger.disabled = saved
        logger.setLevel(saved[2])


def _without_time(line: str) -> dict[str, object]:
    entry = json.loads(line)
    assert entry.pop("time").endswith("Z")
    return dict(entry)


def test_an_audit_line_written_directly_is_the_line_its_record_would_give(refusal_budget: FakeClock) -> None:
    # A client id that looks like a credential: the message is redacted, as the filter would.
    alice = Identity(subject="u1", client_id='token=abc "é"', role="user", source="account")
    token = request_id.set("req-7")
    try:
        with json_audit_log() as (logger, stream):
            (handler,) = logger.handlers
            audit_issued(alice, "details", '{"chat:*":["subscribe"]}', 3_600_000)
            audit_refused(None, NotAuthenticatedError("no session"), "made-up")
    finally:
        request_id.reset(token)
    direct = stream.getvalue().splitlines()
    assert len(direct) == 2  # one line per event, nothing else
    assert [_without_time(line) for line in direct] == [
        {
            "level": "info",
            "logger": "authserver.audit",
            "message": 'token issued: clientId=token=[redacted] "é" role=user source=account format=details '
            'ttl=3600s capability={"chat:*":["subscribe"]}',
            "requestId": "req-7",
            "event": "token_issued",
            "clientId": 'token=abc "é"',
            "role": "user",
            "source": "account",
            "format": "details",
            "capability": '{"chat:*":["subscribe"]}',
            "ttl": 3600,
        },
        {
            "level": "info",
            "logger": "authserver.audit",
            "message": "token refused: code=40101 clientId=None role=None source=None",
            "requestId": "req-7",
            "event": "token_refused",
            "clientId": None,
            "role": None,
            "source": None,
            "format": None,
            "code": 40101,
            "status": 401,
        },
    ]
    # Byte for byte what the formatter makes of the same record (ordinary path), time aside.
    fields = json.loads(direct[0])
    issued = logging.LogRecord("authserver.audit", logging.INFO, __file__, 1, fields["message"], None, None)
    issued.request_id = "req-7"
    issued.audit = {k: v for k, v in fields.items() if k not in ("time", "level", "logger", "message", "requestId")}
    formatted = handler.format(issued)
    assert formatted.split('"level"', 1)[1] == direct[0].split('"level"', 1)[1]


def test_audit_lines_are_ordinary_records_for_any_other_handler(caplog: pytest.LogCaptureFixture) -> None:
    with json_audit_log() as (logger, stream):
        logger.addHandler(caplog.handler)
        audit_issued(Identity(subject="u1", client_id="bob", role="user", source="demo"), "jwt", "{}", 60_000)
    (record,) = [r for r in caplog.records if r.name == "authserver.audit"]
    assert record.getMessage().startswith("token issued: clientId=bob role=user")
    assert record.audit["event"] == "token_issued"  # type: ignore[attr-defined]
    assert json.loads(stream.getvalue())["clientId"] == "bob"  # the JSON handler still got its line


@pytest.fixture
def refusal_budget(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A budget of its own for anonymous refusals (the module's is shared by every test of this
    process that provoked one), on a clock the test moves."""
    clock = FakeClock()
    monkeypatch.setattr(audit_module, "_anonymous", LogLimiter(burst=5, interval=60.0, clock=clock))
    return clock


def _refusal_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "authserver.audit" and r.audit["event"] == "token_refused"]  # type: ignore[attr-defined]


def test_refusals_with_no_identity_are_logged_a_few_a_minute_per_code_and_all_counted(
    service: Service, refusal_budget: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    client = service.client
    with caplog.at_level(logging.INFO, logger="authserver.audit"):
        for cookie, headers, status in [
            (None, {}, 401),  # no credentials
            ("forged." + "x" * 40, {}, 401),  # a cookie no session has
            (None, {"Authorization": "Bearer not-a-token"}, 401),  # a bearer token refused
            ("logged-out", {}, 403),  # the cookie /logout leaves, which anyone can write (40304)
        ]:
            client.cookies.clear()
            if cookie is not None:
                client.cookies.set("authserver_session", cookie)
            for _ in range(100):
                assert client.get("/auth", headers=headers).status_code == status
        # Five lines a minute for each code, each the audit line it always was.
        lines = _refusal_lines(caplog)
        assert sorted(r.audit["code"] for r in lines) == [40101] * 5 + [40304] * 5  # type: ignore[attr-defined]
        assert all(r.audit["clientId"] is None for r in lines)  # type: ignore[attr-defined]
        # A minute later the next line of a code says how many were left out.
        refusal_budget.advance(60)
        caplog.clear()
        client.cookies.clear()
        assert client.get("/auth").status_code == 401
    (summary,) = _refusal_lines(caplog)
    assert summary.audit["code"] == 40101 and summary.audit["suppressed"] == 295  # type: ignore[attr-defined]
    assert summary.getMessage().endswith("(295 more like this not logged)")
    # The metrics count every one.
    text = client.get("/metrics").text
    assert value(text, "authserver_tokens_refused_total", code="40101", format="default") == 301
    assert value(text, "authserver_tokens_refused_total", code="40304", format="default") == 100


def test_refusals_of_a_known_identity_keep_every_audit_line(
    service: Service, refusal_budget: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    service.add_user("alice")
    service.login("alice")
    with caplog.at_level(logging.INFO, logger="authserver.audit"):
        for _ in range(20):
            assert service.client.get("/auth", params={"clientId": "bob"}).status_code == 403
            assert service.client.get("/auth", params={"capability": '{"admin:*":["*"]}'}).status_code == 403
    lines = _refusal_lines(caplog)
    assert sorted(r.audit["code"] for r in lines) == [40102] * 20 + [40160] * 20  # type: ignore[attr-defined]
    assert all(r.audit["clientId"] == "alice" for r in lines)  # type: ignore[attr-defined]


def test_text_logs_name_the_request_too() -> None:
    token = request_id.set("abc123")
    try:
        record = logging.LogRecord("authserver", logging.INFO, __file__, 1, "hello %s", ("world",), None)
        RequestIdFilter().filter(record)
    finally:
        request_id.reset(token)
    assert TextFormatter().format(record).endswith("INFO    authserver: hello world [request abc123]")


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("a\nb", "a\\nb"),
        ("a\r\nb", "a\\r\\nb"),
        ("bell\x07 esc\x1b[31m del\x7f", "bell\\x07 esc\\x1b[31m del\\x7f"),
        ("line\u2028sep\x85next", "line\\u2028sep\\x85next"),
        ("tab\tand caf\u00e9", "tab\tand caf\u00e9"),
    ],
    ids=["newline", "crlf", "c0 controls", "unicode line breaks", "tab and text kept"],
)
def test_a_text_log_line_is_always_one_line_whatever_its_message_holds(message: str, shown: str) -> None:
    record = logging.LogRecord("authserver", logging.INFO, __file__, 1, "got %s", (message,), None)
    assert TextFormatter().format(record).endswith(f"INFO    authserver: got {shown}")


def test_a_text_log_lines_traceback_still_follows_it_on_lines_of_its_own() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("authserver", logging.ERROR, __file__, 1, "failed\nbadly", (), sys.exc_info())
    lines = TextFormatter().format(record).splitlines()
    assert lines[0].endswith("failed\\nbadly") and lines[-1] == "ValueError: boom"


def test_a_json_log_line_escapes_what_some_readers_take_for_a_line_break() -> None:
    record = logging.LogRecord("authserver", logging.INFO, __file__, 1, "a\u2028b\u2029c\x85d\ne", (), None)
    line = JsonFormatter().format(record)
    assert len(line.splitlines()) == 1 and "\\u2028" in line
    assert json.loads(line)["message"] == "a\u2028b\u2029c\x85d\ne"


def test_an_audit_value_is_quoted_only_when_it_could_mislead() -> None:
    assert shown("alice") == "alice" and shown(None) == "None" and shown("bob-device@x.y") == "bob-device@x.y"
    assert shown("x\nforged") == '"x\\nforged"'
    assert shown("a b") == '"a b"' and shown('a"b') == '"a\\"b"' and shown("") == '""'
    assert shown("caf\u00e9\u2028") == '"caf\\u00e9\\u2028"'


def test_the_log_limiter_lets_a_burst_through_then_counts_what_it_dropped(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    limiter = LogLimiter(burst=3, interval=60.0, clock=clock)
    logger = logging.getLogger("authserver.test")
    with caplog.at_level(logging.WARNING, logger="authserver.test"):
        results = [limiter.log(logger, logging.WARNING, "disconnect", "gone %d", i) for i in range(10)]
        assert results == [True] * 3 + [False] * 7
        assert limiter.log(logger, logging.WARNING, "other", "another kind") is True  # budgets are per kind
        clock.advance(60)
        assert limiter.log(logger, logging.WARNING, "disconnect", "gone again") is True
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["gone 0", "gone 1", "gone 2", "another kind", "gone again (7 more like this not logged)"]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_503s_are_logged_as_warnings_a_few_a_minute(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The login gate's 503 (UnavailableError) through the app's own error handler."""
    # a budget of its own: the app's is shared by every test of this process that provoked a 503
    monkeypatch.setattr(app_module, "_limited", LogLimiter(burst=5, interval=60.0))
    request = Request({"type": "http", "method": "POST", "path": "/login", "headers": [], "query_string": b""})

    async def flood() -> None:
        for _ in range(50):
            response = await _domain_error(request, UnavailableError("too many logins in progress"))
            assert response.status_code == 503

    with caplog.at_level(logging.DEBUG, logger="authserver"):
        anyio.run(flood)
    logged = [r for r in caplog.records if "503 on POST /login" in r.getMessage()]
    assert 1 <= len(logged) <= 5
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_a_start_up_failure_is_a_json_line_too(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {**_env(tmp_path), "AUTHSERVER_PORT": str(taken.getsockname()[1])}
        result = subprocess.run(
            [AUTHSERVER, "serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 3
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert entries[-1]["level"] == "error"
    assert "cannot listen on 127.0.0.1:" in entries[-1]["message"]


def test_an_admin_api_key_is_redacted_wherever_it_appears_keeping_its_id() -> None:
    key = "asadm_0123456789ab_" + "Zz9-_" * 8 + "abc"
    assert (
        redact(f"someone pasted {key} into a username")
        == "someone pasted asadm_0123456789ab_[redacted] into a username"
    )
