"""The admin API (``/admin/v1``) with admin API keys: what it answers, to whom, and what it refuses.

Provider tokens carrying the admin role are tests/oidc/test_admin_provider.py's; the keys' storage is
tests/storage/test_admin_storage.py's, the ``api-keys`` command tests/cli/test_admin_cli.py's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from openapi_spec_validator import validate
from realservers import free_port
from starlette.routing import Route

from authserver.http import admin as admin_module
from authserver.http.admin_spec import OPERATIONS
from authserver.identity.adminkeys import NewKey
from authserver.infra.logs import JsonFormatter, LogLimiter, TextFormatter

from admin_api import PASSWORD, PREFIX, AdminClient, every_operation
from conftest import Blocking, Service, ServiceFactory, fresh_postgres_url
from helpers import API_KEY, AUTHSERVER, SESSION_SECRET, FakeClock, running_authserver

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "admin-api.md"


def new_key(service: Service, name: str = "support") -> NewKey:
    """An admin API key made the way ``authserver api-keys create`` makes it."""
    keys = service.client.app.state.services.admin_keys  # type: ignore[attr-defined]
    made: NewKey = Blocking(keys, service.client).create(name, now=service.clock())
    return made


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def problem_of(response: Any, status: int) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem of ``status``; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"] == f"urn:authserver:problem:{status}"
    assert body["title"] and body["detail"]
    return body


@pytest.fixture
def revoking(make_service: ServiceFactory) -> Service:
    """The service with revocation on, its Ably endpoint a port nobody listens on (rows stay queued)."""
    return make_service(ABLY_REVOCABLE_TOKENS="true", ABLY_ENDPOINT=f"http://127.0.0.1:{free_port()}")


# -- switched on and off -----------------------------------------------------------------------------


def test_the_api_is_off_until_the_first_key_exists_and_says_how_to_switch_it_on(service: Service) -> None:
    body = problem_of(service.client.get(f"{PREFIX}/users"), 404)
    assert "authserver api-keys create NAME" in body["detail"] and "AUTHSERVER_ADMIN_ROLE" in body["detail"]
    key = new_key(service)
    assert service.client.get(f"{PREFIX}/users", headers=bearer(key.secret)).json() == {"users": []}


def test_admin_api_off_removes_it_entirely(make_service: ServiceFactory) -> None:
    service = make_service(AUTHSERVER_ADMIN_API="off")
    key = new_key(service)
    for path in ("/users", "/openapi.json"):
        response = service.client.get(PREFIX + path, headers=bearer(key.secret))
        assert response.status_code == 404 and response.headers["content-type"] == "application/json"


# -- credentials -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer asadm_000000000000_" + "A" * 43, "Bearer not-a-key", "Basic YWRtaW46YWRtaW4=", "Bearer "],
    ids=["none", "unknown key", "not a key", "another scheme", "empty"],
)
def test_without_a_valid_credential_every_operation_is_401(service: Service, authorization: str | None) -> None:
    new_key(service)
    headers = {} if authorization is None else {"Authorization": authorization}
    for op in OPERATIONS:
        if op.public:
            continue
        path = op.path.replace("{username}", "alice")
        response = service.client.request(op.method, path, headers=headers, json={})
        problem_of(response, 401)
        assert response.headers["www-authenticate"] == 'Bearer realm="authserver-admin"'


def test_a_key_with_one_character_changed_is_refused(service: Service) -> None:
    key = new_key(service).secret
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert service.client.get(f"{PREFIX}/users", headers=bearer(tampered)).status_code == 401
    assert service.client.get(f"{PREFIX}/users", headers=bearer(key)).status_code == 200


def test_a_provider_token_is_refused_when_no_provider_is_configured(service: Service) -> None:
    new_key(service)
    token = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIn0.c2ln"
    body = problem_of(service.client.get(f"{PREFIX}/users", headers=bearer(token)), 401)
    assert "no identity provider is configured" in body["detail"]


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_revoked_key_is_refused_at_once_by_every_instance(
    make_service: ServiceFactory, request: pytest.FixtureRequest, tmp_path: Path, engine: str
) -> None:
    env: dict[str, str] = {}
    if engine == "postgresql":
        env["DATABASE_URL"] = asyncio.run(fresh_postgres_url(request.getfixturevalue("postgres")))
    one, other = make_service(**env), make_service(**env)  # two workers (or hosts) on one database
    key = new_key(one, "ci").secret
    for instance in (one, other):
        assert instance.client.get(f"{PREFIX}/users", headers=bearer(key)).status_code == 200
    keys = one.client.app.state.services.admin_keys  # type: ignore[attr-defined]
    Blocking(keys, one.client).revoke("ci", now=one.clock())  # as `authserver api-keys revoke ci` does
    for instance in (one, other):
        body = problem_of(instance.client.get(f"{PREFIX}/users", headers=bearer(key)), 401)
        assert body["detail"] == "admin API key refused: unknown or revoked"


def test_each_credential_has_its_own_rate_limit(make_service: ServiceFactory) -> None:
    service = make_service(AUTHSERVER_ADMIN_RATE="3/minute")
    first, second = new_key(service, "first").secret, new_key(service, "second").secret
    for _ in range(3):
        assert service.client.get(f"{PREFIX}/users", headers=bearer(first)).status_code == 200
    response = service.client.get(f"{PREFIX}/users", headers=bearer(first))
    assert problem_of(response, 429)["code"] == 42910
    assert response.headers["retry-after"] == "60"
    assert service.client.get(f"{PREFIX}/users", headers=bearer(second)).status_code == 200


# -- the operations ----------------------------------------------------------------------------------


def test_every_operation_works_with_a_key_as_documented(revoking: Service) -> None:
    admin = AdminClient(revoking.client, bearer(new_key(revoking).secret))
    every_operation(admin, revocation=True, now=revoking.clock())


def test_revocation_off_is_said_and_the_outbox_reports_it(service: Service) -> None:
    admin = AdminClient(service.client, bearer(new_key(service).secret))
    every_operation(admin, revocation=False)


def test_revocations_take_ablys_targets_issued_before_and_reauth_margin(revoking: Service) -> None:
    admin = AdminClient(revoking.client, bearer(new_key(revoking).secret))
    revoking.add_user("bob", client_id="bob-device")
    body = {"targets": ["user:bob", "session:s:0123abcd", "revocationKey:s:4567ef"], "allowReauthMargin": True}
    done = admin.call("POST", "/revocations", json=body, expect=202).json()
    assert done["targets"] == ["clientId:bob-device", "revocationKey:s:0123abcd", "revocationKey:s:4567ef"]
    assert done["allowReauthMargin"] is True and done["issuedBefore"] is None
    outbox = admin.call("GET", "/revocations/outbox", expect=200).json()
    assert outbox["pending"] == 3 and outbox["oldestQueuedAt"] is not None
    unknown = admin.call("POST", "/revocations", json={"targets": ["user:nobody"]}, expect=404).json()
    assert unknown["detail"] == "no such user: 'nobody'" and unknown["code"] == 40400
    for bad in (["channel:x"], ["clientId:"], ["nocolon"]):
        assert admin.call("POST", "/revocations", json={"targets": bad}, expect=400).json()["code"] == 40000


def test_ending_a_users_sessions_tells_their_pages_why(service: Service) -> None:
    admin = AdminClient(service.client, bearer(new_key(service).secret))
    service.add_user("carol")
    service.login("carol")
    cookies = dict(service.client.cookies)
    service.client.cookies.clear()
    admin.call("DELETE", "/users/{username}/sessions", username="carol", expect=204)
    service.client.cookies.update(cookies)
    response = service.client.get("/auth")
    assert (response.status_code, response.json()["error"]["code"]) == (403, 40301)


@pytest.mark.parametrize(
    ("method", "template", "status"),
    [
        ("GET", "/users/{username}", 404),
        ("DELETE", "/users/{username}", 404),
        ("POST", "/users/{username}/disable", 404),
        ("POST", "/users/{username}/enable", 404),
        ("GET", "/users/{username}/sessions", 404),
        ("DELETE", "/users/{username}/sessions", 404),
    ],
)
def test_an_unknown_user_is_404(service: Service, method: str, template: str, status: int) -> None:
    admin = AdminClient(service.client, bearer(new_key(service).secret))
    body = admin.call(method, template, username="nobody", expect=status).json()
    assert body["detail"] == "no such user: 'nobody'" and body["code"] == 40400


@pytest.mark.parametrize(
    ("template", "body"),
    [("/users/{username}/password", {"password": PASSWORD}), ("/users/{username}/role", {"role": "user"})],
)
def test_changing_an_unknown_user_is_404(service: Service, template: str, body: dict[str, str]) -> None:
    admin = AdminClient(service.client, bearer(new_key(service).secret))
    problem = admin.call("PUT", template, username="nobody", json=body, expect=404).json()
    assert problem["detail"] == "no such user: 'nobody'" and problem["code"] == 40400


def test_a_taken_name_is_409_and_an_unknown_role_400(service: Service) -> None:
    admin = AdminClient(service.client, bearer(new_key(service).secret))
    service.add_user("dave")
    taken = admin.call("POST", "/users", json={"username": "dave", "password": PASSWORD}, expect=409).json()
    assert taken["code"] == 40900
    role = admin.call("PUT", "/users/{username}/role", username="dave", json={"role": "pope"}, expect=400).json()
    assert "role 'pope' is not defined by the policy" in role["detail"]
    bad_name = admin.call("POST", "/users", json={"username": "a b", "password": PASSWORD}, expect=400).json()
    assert "username" in bad_name["detail"]


# -- what a client may get wrong: never a 500 ----------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "content_type", "status", "detail"),
    [
        (b"{not json", "application/json", 400, "request body is not valid JSON"),
        (b"[1, 2]", "application/json", 400, "request body must be a JSON object"),
        (b"", "application/json", 400, "request body is not valid JSON"),
        (b'{"username": "x", "password": "y", "admin": true}', "application/json", 400, "unknown field(s): 'admin'"),
        (b'{"username": "x"}', "application/json", 400, "missing field(s): 'password'"),
        (b'{"username": 7, "password": "y"}', "application/json", 400, "field 'username' must be a non-empty string"),
        (b'{"username": "", "password": "y"}', "application/json", 400, "field 'username' must be a non-empty string"),
        (b'{"username": "x", "password": null}', "application/json", 400, "field 'password' must be a non-empty"),
        (b'{"username": "x", "password": "y"}', "text/plain", 415, "send the body as application/json"),
        (b'{"username": "x", "password": "y"}', "", 415, "send the body as application/json"),
        (b'{"a": "' + b"x" * 20_000 + b'"}', "application/json", 413, "request body must be at most 16384 bytes"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 413, "request body must be at most"),
        (b'{"username": "\xff", "password": "y"}', "application/json", 400, "request body is not valid JSON"),
        (b"[" * 8000 + b"]" * 8000, "application/json", 400, "request body is not valid JSON"),
        (b'{"username": "x", "password": "\\ud800"}', "application/json", 400, "field 'password' is not valid Unicode"),
        (b'{"username": "x", "password": "y", "password": 3}', "application/json", 400, "field 'password' must be"),
    ],
    ids=[
        "not json", "an array", "empty", "unknown field", "missing field", "wrong type", "empty string", "null",
        "text/plain", "no content type", "too large", "deeply nested", "not utf-8", "nested within the limit",
        "lone surrogate", "repeated field",
    ],
)  # fmt: skip
def test_a_malformed_body_is_a_problem_never_a_500(
    service: Service, content: bytes, content_type: str, status: int, detail: str
) -> None:
    key = new_key(service).secret
    headers = {**bearer(key), "Content-Type": content_type}
    response = service.client.post(f"{PREFIX}/users", content=content, headers=headers)
    assert problem_of(response, status)["detail"].startswith(detail)


def test_a_body_problem_carries_ablys_code_for_it(service: Service) -> None:
    headers = bearer(new_key(service).secret)
    cases = [
        ({"username": "x"}, 40001),  # invalid request body
        ({"username": "x", "password": "y", "admin": True}, 40002),  # a parameter it does not know
        ({"username": ["x"], "password": "y"}, 40003),  # a parameter's value
    ]
    for body, code in cases:
        assert problem_of(service.client.post(f"{PREFIX}/users", json=body, headers=headers), 400)["code"] == code


def test_wrong_types_in_a_revocation_are_refused(service: Service) -> None:
    key = new_key(service).secret
    bodies: list[dict[str, Any]] = [
        {"targets": "user:x"},
        {"targets": []},
        {"targets": ["user:x"] * 101},
        {"targets": ["user:x"], "issuedBefore": "yesterday"},
        {"targets": ["user:x"], "issuedBefore": -1},
        {"targets": ["user:x"], "issuedBefore": True},
        {"targets": ["user:x"], "allowReauthMargin": "yes"},
    ]
    for body in bodies:
        problem_of(service.client.post(f"{PREFIX}/revocations", json=body, headers=bearer(key)), 400)


def test_unknown_paths_and_methods_are_problems_too(service: Service) -> None:
    key = new_key(service).secret
    assert (
        "no admin API operation"
        in problem_of(service.client.get(f"{PREFIX}/groups", headers=bearer(key)), 404)["detail"]
    )
    response = service.client.patch(f"{PREFIX}/users", headers=bearer(key))
    assert problem_of(response, 405)["detail"].startswith("PATCH is not allowed here")
    assert "code" not in response.json()  # Ably has none for it
    assert response.headers["allow"] == "GET, POST"


# -- audit ---------------------------------------------------------------------------------------------


def test_every_call_is_audited_without_a_key_or_password(
    service: Service, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # refusals without a credential are audited a few a minute per process: this test's own budget
    monkeypatch.setattr(admin_module, "_anonymous", LogLimiter(burst=5, interval=60.0))
    key = new_key(service, "support-desk")
    with caplog.at_level(logging.INFO, logger="authserver.audit"):
        admin = AdminClient(service.client, bearer(key.secret))
        admin.call("POST", "/users", json={"username": "erin", "password": PASSWORD}, expect=201)
        admin.call("PUT", "/users/{username}/password", username="erin", json={"password": "x" + PASSWORD}, expect=204)
        admin.call("GET", "/users/{username}", username="ghost", expect=404)
        service.client.get(f"{PREFIX}/users", headers=bearer(key.secret[:-2] + "xx"))
    lines = [r.getMessage() for r in caplog.records if r.name == "authserver.audit"]
    who = f"by key support-desk ({key.record.key_id})"
    assert lines == [
        f"admin call: createUser target=erin {who}: status 201",
        f"admin call: setPassword target=erin {who}: status 204",
        f"admin call: getUser target=ghost {who}: status 404",
        "admin call: listUsers target=None by none -: status 401",
    ]
    records = [r for r in caplog.records if r.name == "authserver.audit"]
    assert records[0].audit == {  # type: ignore[attr-defined]
        "event": "admin_call",
        "operation": "createUser",
        "target": "erin",
        "credential": "key",
        "caller": f"support-desk ({key.record.key_id})",
        "status": 201,
    }
    text = caplog.text
    assert key.secret not in text and key.secret[:-2] not in text and PASSWORD not in text


# -- the OpenAPI document ------------------------------------------------------------------------------


def test_the_openapi_document_validates_and_names_exactly_the_routes(service: Service) -> None:
    new_key(service)
    document = service.client.get(f"{PREFIX}/openapi.json").json()
    validate(document)  # OpenAPI 3.1, as openapi-spec-validator reads it
    documented = {(m.upper(), path) for path, ops in document["paths"].items() for m in ops}
    served: set[tuple[str, str]] = set()
    for route in service.client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Route) and route.path.startswith(PREFIX) and "{rest:path}" not in route.path:
            ops = [op for op in OPERATIONS if op.path == route.path]
            assert ops, route.path
            served |= {(op.method, route.path) for op in ops}
    assert served == documented


def test_every_documented_success_is_what_a_call_answers(revoking: Service) -> None:
    admin = AdminClient(revoking.client, bearer(new_key(revoking).secret))
    every_operation(admin, revocation=True, now=revoking.clock())
    successes = {
        (method.upper(), path, int(status))
        for path, ops in admin.document["paths"].items()
        for method, op in ops.items()
        for status in op["responses"]
        if int(status) < 300 and not path.endswith("openapi.json")
    }
    assert successes <= admin.seen


# -- the docs' curl example -----------------------------------------------------------------------------


def shell_examples(text: str) -> list[str]:
    """The ```sh blocks of a docs page that call curl."""
    return [block for block in re.findall(r"```sh\n(.*?)```", text, re.S) if "curl" in block]


def test_the_docs_curl_examples_run_against_a_real_server(tmp_path: Path) -> None:
    examples = shell_examples(DOCS.read_text(encoding="utf-8"))
    assert examples, "docs/admin-api.md has no curl example"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "ABLY_API_KEY": API_KEY,
        "SESSION_SECRET": SESSION_SECRET,
        "DATABASE_URL": f"sqlite:///{tmp_path}/authserver.db",
        "ABLY_REVOCABLE_TOKENS": "false",
    }
    made = subprocess.run(
        [AUTHSERVER, "api-keys", "create", "docs"], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    key = made.stdout.strip()
    with running_authserver(["serve", "--port", "0"], env=env, cwd=tmp_path, log=tmp_path / "serve.log") as served:
        for example in examples:
            ran = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", example],
                env={**env, "AUTHSERVER_URL": served.url, "ADMIN_KEY": key},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert ran.returncode == 0, (example, ran.stdout, ran.stderr)
            assert ran.stdout.strip(), example


# -- what the security review of the admin API found (issue #19) -------------------------------------------

FORGED = "2026-12-07 12:37:00,000 INFO    authserver.audit: admin call: removeUser target=bob by key r (k): status 204"


def audit_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "authserver.audit"]


def test_a_newline_in_a_target_never_forges_an_audit_line_in_either_log_format(
    service: Service, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin_module, "_anonymous", LogLimiter(burst=5, interval=60.0))
    key = new_key(service)
    forged = quote("x\n" + FORGED, safe="")
    with caplog.at_level(logging.INFO, logger="authserver.audit"):
        service.client.get(f"{PREFIX}/users/{forged}")  # no credential: anyone can send it
        service.client.get(f"{PREFIX}/users/{forged}", headers=bearer(key.secret))
        body: dict[str, Any] = {"username": "y\r\n" + FORGED, "password": PASSWORD}
        service.client.post(f"{PREFIX}/users", json=body, headers=bearer(key.secret))
        body = {"targets": ["clientId:z\n" + FORGED]}
        service.client.post(f"{PREFIX}/revocations", json=body, headers=bearer(key.secret))
    records = audit_records(caplog)
    assert len(records) == 4
    for record in records:
        text = TextFormatter().format(record)
        assert "\n" not in text and "\r" not in text, text
        assert len(text.splitlines()) == 1 and ' target="' in text, text  # the forged "line" stays quoted
        line = JsonFormatter().format(record)
        assert "\n" not in line and json.loads(line)["event"] == "admin_call"
    assert '"x\\n2026-12-07' in records[0].getMessage()  # the target is quoted, its newline escaped
    assert records[0].audit["target"] == "x\n" + FORGED  # type: ignore[attr-defined]  # JSON escapes it itself


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/users/a%00b"),
        ("PUT", "/users/a%00/role"),
        ("DELETE", "/users/a%01b"),
        ("GET", "/users/a%20b/sessions"),
        ("POST", "/users/%E2%80%A8/disable"),
        ("GET", "/users/" + "a" * 65),
    ],
    ids=["NUL", "NUL then a route", "control", "space", "line separator", "too long"],
)
def test_a_path_username_that_no_account_can_have_is_400_before_any_lookup(
    make_service: ServiceFactory,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
    engine: str,
    method: str,
    path: str,
) -> None:
    env: dict[str, str] = {}
    if engine == "postgresql":
        env["DATABASE_URL"] = asyncio.run(fresh_postgres_url(request.getfixturevalue("postgres")))
    service = make_service(**env)
    key = new_key(service)
    with caplog.at_level(logging.INFO, logger="authserver.audit"):
        response = service.client.request(method, PREFIX + path, json={"role": "user"}, headers=bearer(key.secret))
    body = problem_of(response, 400)
    assert body["detail"].startswith("username ") and body["code"] == 40003
    (record,) = audit_records(caplog)
    assert record.audit["status"] == 400  # type: ignore[attr-defined]


def test_an_unexpected_failure_in_an_admin_call_is_an_audited_problem_500(
    service: Service, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(call: admin_module.Call) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setitem(admin_module.HANDLERS, "listUsers", broken)
    key = new_key(service)
    with caplog.at_level(logging.INFO):
        response = service.client.get(f"{PREFIX}/users", headers=bearer(key.secret))
    body = problem_of(response, 500)
    assert "a bug" not in body["detail"]
    (record,) = audit_records(caplog)
    assert record.audit["status"] == 500 and record.audit["operation"] == "listUsers"  # type: ignore[attr-defined]
    assert any(r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)  # the trace is logged


@pytest.mark.parametrize("slash", ["%2F", "%2f"])
def test_an_encoded_slash_in_an_admin_path_is_refused_not_routed(service: Service, slash: str) -> None:
    admin = AdminClient(service.client, bearer(new_key(service).secret))
    service.add_user("alice")
    path = f"{PREFIX}/users/alice{slash}role"
    response = service.client.put(path, json={"role": "admin"}, headers=admin.headers)
    assert "/" in problem_of(response, 400)["detail"]
    assert admin.call("GET", "/users/{username}", username="alice", expect=200).json()["role"] != "admin"
    for method, other in (("GET", f"/users/alice{slash}sessions"), ("DELETE", f"/users{slash}alice")):
        problem_of(service.client.request(method, PREFIX + other, headers=admin.headers), 400)


def test_refused_calls_left_out_of_the_audit_are_counted_in_the_next_line(
    service: Service, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    minute = FakeClock()
    monkeypatch.setattr(admin_module, "_anonymous", LogLimiter(burst=2, interval=60.0, clock=minute))
    new_key(service)
    with caplog.at_level(logging.INFO, logger="authserver.audit"):
        for _ in range(5):
            assert service.client.get(f"{PREFIX}/users").status_code == 401
        minute.advance(60)
        assert service.client.get(f"{PREFIX}/users").status_code == 401
    records = audit_records(caplog)
    assert len(records) == 3
    assert records[-1].getMessage().endswith("status 401 (3 more like this not logged)")
    assert records[-1].audit["suppressed"] == 3  # type: ignore[attr-defined]
    assert records[0].audit["suppressed"] == 0  # type: ignore[attr-defined]


def ms(seconds: float) -> int:
    return int(seconds * 1000)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_issued_before_must_be_within_the_hour_ably_accepts(
    make_service: ServiceFactory, request: pytest.FixtureRequest, engine: str
) -> None:
    env = {"ABLY_REVOCABLE_TOKENS": "true", "ABLY_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    if engine == "postgresql":
        env["DATABASE_URL"] = asyncio.run(fresh_postgres_url(request.getfixturevalue("postgres")))
    service = make_service(**env)
    admin = AdminClient(service.client, bearer(new_key(service).secret))
    now = service.clock()
    # Ably's hour less a minute kept for the delivery; a minute ahead (another host's clock) counts as now
    for refused in (2**63, 2**64, ms(now + 61), ms(now - 3541), ms(now - 3600), 0):
        body = {"targets": ["clientId:bob"], "issuedBefore": refused}
        problem = admin.call("POST", "/revocations", json=body, expect=400).json()
        assert problem["code"] == 40003, problem
        if refused < 2**53:  # a time (larger numbers are no JSON-safe integer at all)
            assert "not in the future" in problem["detail"] and "hour" in problem["detail"], problem
    for accepted, sent in ((ms(now + 60), ms(now)), (ms(now), ms(now)), (ms(now - 3540), ms(now - 3540))):
        body = {"targets": ["clientId:bob"], "issuedBefore": accepted}
        assert admin.call("POST", "/revocations", json=body, expect=202).json()["issuedBefore"] == sent
    assert admin.call("GET", "/revocations/outbox", expect=200).json()["pending"] == 3
    schema = admin.document["components"]["schemas"]["Revoke"]["properties"]["issuedBefore"]
    assert schema["maximum"] < 2**63 and "hour" in schema["description"]
