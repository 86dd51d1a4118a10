"""The edge of the app: forwarding headers believed only from trusted proxies (and what that means
for the login throttle), the Host check, no redirect built from Host, no-cache on every error, the
request id; and the one edge layer that adds every header once (authserver.http.edge.Edge)."""

from __future__ import annotations

import ipaddress
import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from authserver.config import DEFAULT_MAX_IN_FLIGHT
from authserver.errors import ForbiddenError
from authserver.http.app import create_app
from authserver.http.edge import Edge, direct
from authserver.http.forwarding import real_client, throttle_address
from authserver.http.responses import exception_response
from authserver.identity.passwords import Passwords
from authserver.infra.metrics import Metrics

from conftest import SettingsFactory
from helpers import AUTHSERVER, FakeClock

NO_CACHE = "private, no-cache, no-store, must-revalidate"
ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(make_settings: SettingsFactory, clock: FakeClock, fast_passwords: Passwords) -> Iterator[ClientFactory]:
    """A TestClient whose TCP peer is ``peer``, for an app built from ``env``."""
    clients: list[TestClient] = []

    def make(peer: str = "203.0.113.5", **env: str) -> TestClient:
        app = create_app(make_settings(**env), clock=clock, passwords=fast_passwords)
        client = TestClient(app, base_url="http://testserver", client=(peer, 40000))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _fail_login(client: TestClient, username: str, forwarded_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
    response = client.post("/login", json={"username": username, "password": "wrong guess"}, headers=headers)
    return response.status_code


# -- which address is the client's --------------------------------------------------------------

TRUSTED = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "::1/128")]


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        ("203.0.113.5", ["198.51.100.1"], ("203.0.113.5", True)),  # untrusted peer: headers ignored
        ("10.0.0.2", ["198.51.100.1"], ("198.51.100.1", True)),
        ("10.0.0.2", ["1.1.1.1, 198.51.100.1"], ("198.51.100.1", True)),  # the client wrote 1.1.1.1
        ("10.0.0.2", ["1.1.1.1", "198.51.100.1, 10.0.0.9"], ("198.51.100.1", True)),  # two proxies, two headers
        ("10.0.0.2", ["198.51.100.1:4711"], ("198.51.100.1", True)),
        ("10.0.0.2", ["[2001:db8::1]:4711"], ("2001:db8::1", True)),
        ("10.0.0.2", ["10.0.0.7, 10.0.0.8"], ("10.0.0.7", True)),  # all trusted: the left-most
        ("10.0.0.2", [], ("10.0.0.2", False)),  # a trusted proxy that did not say
        ("10.0.0.2", ["1.1.1.1, unknown"], ("10.0.0.2", False)),
    ],
)
def test_the_client_is_the_right_most_untrusted_forwarded_address(
    peer: str, forwarded_for: list[str], expected: tuple[str, bool]
) -> None:
    assert real_client(peer, forwarded_for, TRUSTED) == expected


def test_forwarding_headers_are_ignored_without_trusted_proxies(make_client: ClientFactory) -> None:
    """Even from loopback (uvicorn's own default trusts 127.0.0.1)."""
    client = make_client(peer="127.0.0.1")
    for i in range(10):
        assert _fail_login(client, "alice", forwarded_for=f"192.0.2.{i}") == 401
    assert _fail_login(client, "alice", forwarded_for="192.0.2.200") == 429


def test_the_eleventh_failure_is_throttled_however_a_client_behind_a_trusted_proxy_forges_the_header(
    make_client: ClientFactory,
) -> None:
    client = make_client(peer="10.0.0.2", AUTHSERVER_TRUSTED_PROXIES="10.0.0.0/8")
    # The proxy appends the real address (198.51.100.7); the client writes whatever it likes before it.
    for i in range(10):
        assert _fail_login(client, "alice", forwarded_for=f"192.0.2.{i}, 10.0.0.{i}, 198.51.100.7") == 401
    assert _fail_login(client, "alice", forwarded_for="203.0.113.99, 198.51.100.7") == 429
    # Another real address is another client.
    assert _fail_login(client, "alice", forwarded_for="198.51.100.8") == 401


@pytest.mark.parametrize("forwarded_for", [None, "unknown", "198.51.100.1, garbage"], ids=["none", "word", "garbage"])
def test_a_trusted_proxy_that_sends_no_usable_address_is_limited_as_one_address_and_said_once(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture, forwarded_for: str | None
) -> None:
    """Its clients cannot be told apart: all of them together get one address's limit (fail closed)."""
    client = make_client(peer="10.0.0.2", AUTHSERVER_TRUSTED_PROXIES="10.0.0.2")
    caplog.set_level(logging.WARNING, logger="authserver.http")
    for i in range(50):  # the per-address limit, spread over many names
        assert _fail_login(client, f"guess{i}", forwarded_for) == 401
    for i in range(50, 60):
        assert _fail_login(client, f"guess{i}", forwarded_for) == 429
    said = [r.getMessage() for r in caplog.records if "sends no usable X-Forwarded-For" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("trusted proxy 10.0.0.2 ")
    assert "garbage" not in said[0]
    # What the same proxy forwards with a usable address is that client's, with its own limits.
    assert _fail_login(client, "guess60", forwarded_for="198.51.100.7") == 401


def test_the_per_address_limit_holds_for_a_known_address(make_client: ClientFactory) -> None:
    """For contrast: 50 failures from one real address refuse that address for every name."""
    client = make_client(peer="10.0.0.2", AUTHSERVER_TRUSTED_PROXIES="10.0.0.2")
    for i in range(50):
        assert _fail_login(client, f"guess{i}", forwarded_for="198.51.100.7") == 401
    assert _fail_login(client, "someone-else", forwarded_for="198.51.100.7") == 429
    assert _fail_login(client, "someone-else", forwarded_for="198.51.100.8") == 401


def test_ipv6_clients_are_counted_per_64_network(make_client: ClientFactory) -> None:
    """One subscriber usually holds a whole /64: each of its addresses is not another client."""
    client = make_client(peer="10.0.0.2", AUTHSERVER_TRUSTED_PROXIES="10.0.0.2")
    for i in range(50):
        assert _fail_login(client, f"guess{i}", forwarded_for=f"2001:db8:1:2::{i + 1:x}") == 401
    assert _fail_login(client, "someone-else", forwarded_for="2001:db8:1:2:ffff::9") == 429
    assert _fail_login(client, "someone-else", forwarded_for="2001:db8:1:3::1") == 401  # the next /64


@pytest.mark.parametrize(
    ("peer", "counted_as"),
    [
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),  # an IPv4 client on a dual-stack socket
        ("198.51.100.7", "198.51.100.7"),
        ("testclient", "testclient"),
    ],
)
def test_the_throttle_address_of_a_peer(peer: str, counted_as: str) -> None:
    assert throttle_address({"type": "http", "client": (peer, 1)}) == counted_as


def test_forwarded_proto_https_from_a_trusted_proxy_makes_the_cookie_secure(make_client: ClientFactory) -> None:
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    login = {"username": "alice", "password": "any"}
    trusted = make_client(peer="10.0.0.2", AUTHSERVER_TRUSTED_PROXIES="10.0.0.2", AUTHSERVER_DEMO_LOGIN="true")
    assert "secure" in trusted.post("/login", json=login, headers=headers).headers["set-cookie"].lower()
    untrusted = make_client(peer="10.0.0.3", AUTHSERVER_TRUSTED_PROXIES="10.0.0.2", AUTHSERVER_DEMO_LOGIN="true")
    assert "secure" not in untrusted.post("/login", json=login, headers=headers).headers["set-cookie"].lower()


# -- Host ------------------------------------------------------------------------------------------


def test_an_unlisted_host_is_refused_with_an_ably_error(make_client: ClientFactory) -> None:
    client = make_client(AUTHSERVER_ALLOWED_HOSTS="auth.example.com,*.example.org,localhost:8443")
    for host in ("auth.example.com", "auth.example.com:443", "a.b.example.org", "localhost:8443"):
        assert client.get("/client-config", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "example.org", "localhost", "localhost:9000", "auth.example.com.evil"):
        response = client.get("/client-config", headers={"Host": host})
        assert response.status_code == 400, host
        assert response.json()["error"]["code"] == 40000
        assert response.headers["cache-control"] == NO_CACHE


def test_probes_answer_whatever_the_host(make_client: ClientFactory) -> None:
    client = make_client(AUTHSERVER_ALLOWED_HOSTS="auth.example.com")
    assert client.get("/healthz", headers={"Host": "10.1.2.3:8000"}).status_code == 200


@pytest.mark.parametrize("path", ["/auth/", "/healthz/", "/static", "/login/"])
def test_no_redirect_is_built_from_the_host_header(make_client: ClientFactory, path: str) -> None:
    client = make_client()
    response = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.headers["cache-control"] == NO_CACHE


def test_every_error_carries_the_no_cache_headers(make_client: ClientFactory) -> None:
    client = make_client()
    answers = [
        client.get("/nowhere"),
        client.post("/healthz"),  # 405
        client.get("/auth"),  # 401
        client.post("/login", content=b"x" * 20_000, headers={"Content-Type": "application/json"}),  # 413
        client.get("/static/nothing-here.js"),
    ]
    for response in answers:
        assert response.status_code >= 400
        assert response.headers["cache-control"] == NO_CACHE, response.request.url
        assert response.headers["pragma"] == "no-cache"
        assert response.headers["expires"] == "0"


# -- request id ------------------------------------------------------------------------------------


def test_a_safe_request_id_is_echoed_and_anything_else_replaced(make_client: ClientFactory) -> None:
    client = make_client()
    assert client.get("/healthz", headers={"X-Request-ID": "req-42.a:b_c"}).headers["x-request-id"] == "req-42.a:b_c"
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32 and generated.isalnum()
    for unsafe in ("a" * 65, "has space", "new\\nline", "<script>"):
        echoed = client.get("/healthz", headers={"X-Request-ID": unsafe}).headers["x-request-id"]
        assert echoed != unsafe and len(echoed) == 32
    assert client.get("/healthz").headers["x-request-id"] != generated


# -- settings --------------------------------------------------------------------------------------


def test_check_refuses_bad_edge_settings_naming_each(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AUTHSERVER_LOG_FORMAT": "xml",
        "AUTHSERVER_TRUSTED_PROXIES": "10.0.0.0/8, proxy.local",
        "AUTHSERVER_ALLOWED_HOSTS": "auth.example.com, bad host",
        "AUTHSERVER_HEADER_TIMEOUT": "0",
        "AUTHSERVER_BODY_TIMEOUT": "ten",
        "AUTHSERVER_MAX_CONNECTIONS": "-1",
        "AUTHSERVER_MAX_HEADER_BYTES": "100",
    }
    result = subprocess.run([AUTHSERVER, "check"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    for name in (
        "AUTHSERVER_LOG_FORMAT: 'xml' is not one of text, json",
        "AUTHSERVER_TRUSTED_PROXIES: 'proxy.local' is not an IP address or CIDR network",
        "AUTHSERVER_ALLOWED_HOSTS: 'bad host' is not a host name",
        "AUTHSERVER_HEADER_TIMEOUT: 0 is outside 1..300",
        "AUTHSERVER_BODY_TIMEOUT: 'ten' is not a whole number",
        "AUTHSERVER_MAX_CONNECTIONS: -1 is outside",
        "AUTHSERVER_MAX_HEADER_BYTES: 100 is outside 1024..1048576",
    ):
        assert name in result.stderr


def test_edge_settings_are_read(make_settings: SettingsFactory) -> None:
    settings = make_settings(
        AUTHSERVER_LOG_FORMAT="JSON",
        AUTHSERVER_TRUSTED_PROXIES="10.0.0.1, 192.168.0.0/16 ,::1",
        AUTHSERVER_ALLOWED_HOSTS="Auth.Example.com,*.example.org,localhost:8443,[::1]:8000",
        AUTHSERVER_HEADER_TIMEOUT="5",
        AUTHSERVER_MAX_CONNECTIONS="500",
    )
    assert settings.log_format == "json"
    assert settings.trusted_proxies == ("10.0.0.1/32", "192.168.0.0/16", "::1/128")
    assert settings.allowed_hosts == ("auth.example.com", "*.example.org", "localhost:8443", "[::1]:8000")
    assert (settings.header_timeout, settings.body_timeout, settings.max_connections) == (5.0, 10.0, 500)
    assert settings.max_header_bytes == 16 * 1024
    defaults = make_settings()
    assert (defaults.log_format, defaults.trusted_proxies, defaults.allowed_hosts) == ("text", (), ())


def test_check_shows_the_edge_settings_and_warns_about_trusting_everyone(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AUTHSERVER_ENV": "development",
        "AUTHSERVER_TRUSTED_PROXIES": "0.0.0.0/0",
        "AUTHSERVER_ALLOWED_HOSTS": "auth.example.com",
        "AUTHSERVER_MAX_CONNECTIONS": "300",
    }
    result = subprocess.run([AUTHSERVER, "check"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "  trusted proxies: 0.0.0.0/0\n" in result.stdout
    assert "  allowed hosts: auth.example.com\n" in result.stdout
    assert "  connections: at most 300 open, headers within 10s and 16384 bytes, bodies within 10s\n" in result.stdout
    admission = (
        f"  admission: /auth and /token answered 503 past {DEFAULT_MAX_IN_FLIGHT} requests in flight per process,"
        " or past a limit of requests queued for the event loop that adapts"
        f" (8 to {DEFAULT_MAX_IN_FLIGHT}) to keep their wait under 5 ms\n"
    )
    assert admission in result.stdout
    assert "WARNING: AUTHSERVER_TRUSTED_PROXIES trusts every address" in result.stdout


# -- one layer, one send wrapper ----------------------------------------------------------------


def _edge_client(app: ASGIApp, **options: Any) -> TestClient:
    return TestClient(Edge(app, metrics=Metrics(), **options), raise_server_exceptions=False)


def test_the_edge_keeps_what_the_app_set_and_adds_each_of_its_headers_once() -> None:
    async def own_headers(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"text/plain"),
            (b"content-length", b"2"),
            (b"content-security-policy", b"default-src 'self'"),
            (b"vary", b"Accept, origin"),
            (b"pragma", b"app"),
        ]
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": b"no"})

    client = _edge_client(own_headers, origins=["https://app.example.com"])
    response = client.get("/session", headers={"Origin": "https://app.example.com"})
    assert response.status_code == 404 and response.text == "no"
    names = [name.lower() for name, _ in response.headers.raw]
    assert len(names) == len(set(names)), names  # nothing twice
    assert response.headers["content-security-policy"] == "default-src 'self'"  # the app's own
    assert response.headers["x-frame-options"] == "DENY" and response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["vary"] == "Origin, Accept"
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
    assert response.headers["cache-control"] == NO_CACHE and response.headers["pragma"] == "app"  # an error
    assert len(response.headers["x-request-id"]) == 32
    # Not a CORS path: no Vary, no CORS header; a 2xx answer gets no no-cache headers from the edge.
    ok = TestClient(Edge(PlainTextResponse("ok"), metrics=Metrics())).get("/healthz")
    assert "vary" not in ok.headers and "cache-control" not in ok.headers
    assert ok.headers["referrer-policy"] == "no-referrer"


def test_a_direct_route_is_answered_by_its_endpoint_and_counted_under_its_template() -> None:
    async def endpoint(request: Request) -> Response:
        if request.query_params.get("refuse"):
            raise ForbiddenError("refused here")
        return PlainTextResponse(f"direct {request.method}")

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ForbiddenError)
        return exception_response(exc)

    route = Route("/auth", endpoint, methods=["GET"])
    metrics = Metrics()
    router = Starlette(routes=[Route("/other", PlainTextResponse("routed"))])
    client = TestClient(Edge(router, metrics=metrics, direct={("GET", "/auth"): direct(route, handler)}))
    assert client.get("/auth").text == "direct GET"
    refused = client.get("/auth", params={"refuse": "1"})
    assert refused.status_code == 403 and refused.headers["x-ably-errorcode"] == "40300"
    assert refused.headers["cache-control"] == NO_CACHE and refused.headers["x-frame-options"] == "DENY"
    assert client.get("/other").text == "routed"  # everything else goes to the app
    text = metrics.render()[0].decode()
    for status in ("200", "403"):
        assert f'authserver_request_duration_seconds_count{{method="GET",route="/auth",status="{status}"}} 1.0' in text


def test_an_exception_becomes_an_ably_500_with_the_edge_headers_unless_the_answer_had_started(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("secret in the message")

    response = _edge_client(broken).get("/auth")
    assert response.status_code == 500 and response.json()["error"]["code"] == 50000
    assert response.headers["x-content-type-options"] == "nosniff" and response.headers["vary"] == "Origin"

    async def half(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        raise RuntimeError("secret after the head")

    late = _edge_client(half).get("/healthz")
    assert late.status_code == 200  # the answer had begun: no second one is started
    logged = [r.getMessage() for r in caplog.records]
    assert logged == ["unexpected RuntimeError on GET /auth", "unexpected RuntimeError on GET /healthz"]
