"""The login page's routes and security headers, on the smallest app that serves them."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Message

from authserver.http import web
from authserver.http.middleware import SecurityHeadersMiddleware
from authserver.http.web import (
    ABLY_JS_CDN_INTEGRITY,
    ABLY_JS_CDN_URL,
    ABLY_JS_VERSION,
    security_middleware_args,
    web_routes,
)

REPO = Path(__file__).resolve().parents[2]
NPM_ABLY = REPO / ".cache" / "node" / "node_modules" / "ably"


@dataclass(frozen=True)
class FakeSettings:
    ably_endpoint: str | None = None
    ably_js: str = "cdn"
    ably_js_path: Path = NPM_ABLY
    demo_login: bool = False
    provider_login: str | None = None


def build_app(settings: FakeSettings) -> Starlette:
    async def auth(request: object) -> PlainTextResponse:
        return PlainTextResponse("token")

    routes = [Route("/auth", auth), *web_routes(settings)]
    middleware = [Middleware(SecurityHeadersMiddleware, **security_middleware_args(settings))]
    return Starlette(routes=routes, middleware=middleware)


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def client_for() -> ClientFactory:
    def make(**kwargs: object) -> TestClient:
        return TestClient(build_app(FakeSettings(**kwargs)))  # type: ignore[arg-type]

    return make


def csp_directives(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/static/style.css", "/client-config", "/auth", "/nowhere"])
def test_every_response_carries_the_security_headers(client_for: ClientFactory, path: str) -> None:
    response = client_for().get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    csp = csp_directives(response.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert csp["form-action"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]


def test_csp_allows_no_inline_or_eval(client_for: ClientFactory) -> None:
    for settings in ({}, {"ably_js": "local", "ably_endpoint": "http://127.0.0.1:8001"}):
        policy = client_for(**settings).get("/").headers["content-security-policy"]
        assert "unsafe-inline" not in policy
        assert "unsafe-eval" not in policy
        assert "*" not in csp_directives(policy)["script-src"]


def test_csp_for_real_ably_allows_the_cdn_and_ably_hosts(client_for: ClientFactory) -> None:
    csp = csp_directives(client_for().get("/").headers["content-security-policy"])
    assert csp["script-src"] == ["'self'", ABLY_JS_CDN_URL]  # the pinned script only, not the whole CDN
    assert csp["connect-src"] == [
        "'self'",
        "https://*.ably.net",
        "wss://*.ably.net",
        "https://*.ably-realtime.com",
        "wss://*.ably-realtime.com",
    ]


def test_csp_for_a_sandbox_allows_only_its_origin_and_local_ably_js(client_for: ClientFactory) -> None:
    client = client_for(ably_endpoint="http://127.0.0.1:8001", ably_js="local")
    csp = csp_directives(client.get("/").headers["content-security-policy"])
    assert csp["script-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'", "http://127.0.0.1:8001", "ws://127.0.0.1:8001"]


def test_security_headers_leave_a_header_the_app_set_alone() -> None:
    async def framed(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok", headers={"X-Frame-Options": "SAMEORIGIN"})

    app = Starlette(routes=[Route("/", framed)], middleware=[Middleware(SecurityHeadersMiddleware)])
    response = TestClient(app).get("/")
    assert response.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("origin", ["https://a.example; script-src *", "'unsafe-inline'", ""])
def test_security_headers_refuse_a_source_that_is_not_an_origin(origin: str) -> None:
    with pytest.raises(ValueError, match="not a plain origin"):
        SecurityHeadersMiddleware(PlainTextResponse("x"), connect_src=[origin])


def test_index_is_the_login_page(client_for: ClientFactory) -> None:
    response = client_for().get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert 'id="login-form"' in response.text


def test_page_has_no_inline_script_style_or_handlers() -> None:
    for name in ("index.html",):
        html = (REPO / "web" / name).read_text(encoding="utf-8").lower()
        assert "<style" not in html
        assert " style=" not in html
        assert " onclick=" not in html and " onsubmit=" not in html and " onload=" not in html
        for tag in html.split("<script")[1:]:
            assert " src=" in tag.split(">")[0]
            assert tag.split(">", 1)[1].startswith("</script")


@pytest.mark.parametrize("module", sorted(p.name for p in (REPO / "web").rglob("*.js")))
def test_scripts_build_the_dom_without_html_strings_or_eval(module: str) -> None:
    script = next((REPO / "web").rglob(module)).read_text(encoding="utf-8")
    for risky in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert risky not in script
    assert "setAttribute('style'" not in script  # inline styles are refused by the CSP


def test_page_modules_are_served_as_javascript(client_for: ClientFactory) -> None:
    # A module script with a non-JavaScript type is refused by the browser (strict MIME checking).
    client = client_for()
    for path in ["/static/app.js", *(f"/static/lib/{p.name}" for p in (REPO / "web" / "lib").glob("*.js"))]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/javascript"), path


def test_csp_lets_the_page_load_its_own_module_scripts_only(client_for: ClientFactory) -> None:
    script_src = csp_directives(client_for().get("/").headers["content-security-policy"])["script-src"]
    assert script_src[0] == "'self'"
    assert "'unsafe-inline'" not in script_src and "data:" not in script_src


def test_static_files_are_served_with_their_types(client_for: ClientFactory) -> None:
    client = client_for()
    js = client.get("/static/app.js")
    assert js.status_code == 200
    assert "javascript" in js.headers["content-type"]
    assert "text/css" in client.get("/static/style.css").headers["content-type"]


@pytest.mark.parametrize(
    "path",
    [
        "/static/../pyproject.toml",
        "/static/%2e%2e/pyproject.toml",
        "/static/%2e%2e/authserver/config.py",
        "/static/..%2fauthserver%2fconfig.py",
        "/static/%2fetc%2fpasswd",
        "/static/",
        "/static",
        "/web/index.html",
        "/authserver/config.py",
        "/pyproject.toml",
        "/.git/config",
    ],
)
def test_nothing_outside_web_is_reachable(client_for: ClientFactory, path: str) -> None:
    response = client_for().get(path)
    assert response.status_code == 404
    assert "[project]" not in response.text and "load_settings" not in response.text


@pytest.mark.parametrize("raw_path", ["/static/../pyproject.toml", "/static/../authserver/config.py", "/static/."])
def test_traversal_is_refused_even_when_the_client_does_not_normalise(raw_path: str) -> None:
    # httpx removes dot segments before sending; a raw ASGI call shows what the server itself does.
    app = build_app(FakeSettings())
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    anyio.run(app, scope, receive, send)
    assert sent[0]["status"] == 404


def test_client_config_for_real_ably(client_for: ClientFactory) -> None:
    response = client_for().get("/client-config")
    assert response.headers["cache-control"] == "private, no-cache, no-store, must-revalidate"
    assert response.json() == {
        "authUrl": "/auth",
        "clientOptions": {},
        "ablyJs": {"src": ABLY_JS_CDN_URL, "integrity": ABLY_JS_CDN_INTEGRITY},
        "target": "Ably",
        "demoLogin": False,
        "providerLogin": None,
    }


def test_client_config_for_a_sandbox(client_for: ClientFactory) -> None:
    body = client_for(ably_endpoint="http://127.0.0.1:8001", ably_js="local").get("/client-config").json()
    assert body == {
        "authUrl": "/auth",
        "clientOptions": {
            "endpoint": "127.0.0.1",
            "port": 8001,
            "tls": False,
            "transports": ["web_socket"],
            "disableConnectivityCheck": True,
        },
        "ablyJs": {"src": "/vendor/ably.min.js", "integrity": None},
        "target": "sandbox at 127.0.0.1:8001",
        "demoLogin": False,
        "providerLogin": None,
    }


def test_client_config_says_whether_demo_login_is_on(client_for: ClientFactory) -> None:
    # The page shows its "any name and password" hint from this.
    assert client_for(demo_login=True).get("/client-config").json()["demoLogin"] is True
    assert client_for(demo_login=False).get("/client-config").json()["demoLogin"] is False


def test_client_config_for_a_tls_sandbox_uses_tls_port(client_for: ClientFactory) -> None:
    options = client_for(ably_endpoint="https://sandbox.example:9443").get("/client-config").json()["clientOptions"]
    assert options["tls"] is True and options["tlsPort"] == 9443 and "port" not in options


def test_a_bad_endpoint_fails_when_the_routes_are_built() -> None:
    with pytest.raises(ValueError, match="ably_endpoint"):
        web_routes(FakeSettings(ably_endpoint="127.0.0.1:8001"))


def test_pinned_cdn_build_is_ably_js_2() -> None:
    assert ABLY_JS_VERSION.startswith("2.")
    assert ABLY_JS_CDN_URL == f"https://cdn.ably.com/lib/ably.min-{ABLY_JS_VERSION}.js"
    assert ABLY_JS_CDN_INTEGRITY.startswith("sha384-")


@pytest.mark.node  # needs the npm copy that the set-up installs
def test_pinned_integrity_matches_the_npm_build_of_that_version() -> None:
    package = NPM_ABLY / "package.json"
    if not package.is_file():
        pytest.skip("ably-js is not installed under .cache/node (scripts/setup --test installs it)")
    version = json.loads(package.read_text(encoding="utf-8"))["version"]
    if version != ABLY_JS_VERSION:
        pytest.skip(f"the npm copy is ably-js {version}, the pin is {ABLY_JS_VERSION}")
    digest = hashlib.sha384((NPM_ABLY / "build" / "ably.min.js").read_bytes()).digest()
    assert ABLY_JS_CDN_INTEGRITY == "sha384-" + base64.b64encode(digest).decode()


def test_vendor_route_exists_only_for_local_ably_js(client_for: ClientFactory) -> None:
    assert client_for(ably_js="cdn").get("/vendor/ably.min.js").status_code == 404


def test_vendor_serves_the_npm_copy(tmp_path: Path, client_for: ClientFactory) -> None:
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "ably.min.js").write_text("/* ably */", encoding="utf-8")
    (tmp_path / "package.json").write_text('{"version": "2.28.0"}', encoding="utf-8")
    response = client_for(ably_js="local", ably_js_path=tmp_path).get("/vendor/ably.min.js")
    assert response.status_code == 200
    assert response.text == "/* ably */"
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"


def test_vendor_is_a_clear_404_when_the_npm_copy_is_missing(tmp_path: Path, client_for: ClientFactory) -> None:
    response = client_for(ably_js="local", ably_js_path=tmp_path / "missing").get("/vendor/ably.min.js")
    assert response.status_code == 404
    assert "install it with scripts/setup" in response.text
    assert str(tmp_path) not in response.text


def test_vendor_refuses_an_ably_js_that_is_not_2x(tmp_path: Path, client_for: ClientFactory) -> None:
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "ably.min.js").write_text("/* old */", encoding="utf-8")
    (tmp_path / "package.json").write_text('{"version": "1.2.50"}', encoding="utf-8")
    response = client_for(ably_js="local", ably_js_path=tmp_path).get("/vendor/ably.min.js")
    assert response.status_code == 404
    assert "1.2.50" in response.text and "2.x" in response.text


def test_web_module_reads_no_environment() -> None:
    source = Path(web.__file__).read_text(encoding="utf-8")
    assert "os.environ" not in source and "getenv" not in source
