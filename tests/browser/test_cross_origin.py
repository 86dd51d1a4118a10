"""A page on another origin, in Chromium, with ably-js and the session cookie: what ably-js really
sends, and what the service says when the cookie does not come along.

ably-js sets ``withCredentials`` on its authUrl request only when ``authHeaders`` has a key spelled
exactly ``authorization``: spelled ``Authorization``, the request goes without the cookie, and the
service's 401 says so (and where to read why) instead of a bare "not logged in".
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page

from .conftest import PASSWORD, TOKEN_TTL, USERNAME, ConsoleLog, Service, serving

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

#: The other origin's page: it logs in to the service with a credentialed fetch (allowed by CORS, the
#: SameSite=Strict cookie goes along: same site, another port), then connects with the given authHeaders.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>another origin</title>
<script src="SERVICE/vendor/ably.min.js"></script></head>
<body><script>
window.connect = async (headerName) => {
  const login = await fetch('SERVICE/login', {
    method: 'POST', credentials: 'include', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({username: 'USERNAME', password: 'PASSWORD'}),
  });
  if (!login.ok) throw new Error('login ' + login.status);
  const client = new Ably.Realtime({...OPTIONS, authUrl: 'SERVICE/auth', authHeaders: {[headerName]: '-'}});
  window.client = client;
  return await new Promise((resolve) => {
    client.connection.on((change) => {
      if (change.current === 'connected' || (change.reason && change.current !== 'connecting')) {
        const cause = change.reason && change.reason.cause;
        resolve({state: change.current, reason: cause ? `${cause.code} ${cause.statusCode} ${cause.message}` : ''});
      }
    });
  });
};
</script></body></html>"""


@pytest.fixture(scope="module")
def other_origin() -> Iterator[tuple[str, list[str]]]:
    """A plain web server on another port: the origin of someone's own front-end. Its page is set once
    the service's address is known."""
    page: list[str] = [""]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page[0].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", page
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def cross_origin_service(
    tmp_path_factory: pytest.TempPathFactory, ably_js_dir: Path, other_origin: tuple[str, list[str]]
) -> Iterator[Service]:
    origin, page = other_origin
    workdir = tmp_path_factory.mktemp("authserver-cross-origin")
    extra = {"AUTHSERVER_ALLOWED_ORIGINS": origin}
    with serving(workdir, ably_js_dir, token_ttl=TOKEN_TTL, demo_login=False, extra=extra) as svc:
        # where the sandbox is, as the service's own page learns it (/client-config is same-origin only)
        options = httpx.get(f"{svc.base_url}/client-config").json()["clientOptions"]
        replaced = {"SERVICE": svc.base_url, "USERNAME": USERNAME, "PASSWORD": PASSWORD, "OPTIONS": json.dumps(options)}
        page[0] = PAGE
        for name, value in replaced.items():
            page[0] = page[0].replace(name, value)
        yield svc


def _connect(page: Page, origin: str, header_name: str) -> dict[str, str]:
    page.goto(f"{origin}/")
    result: dict[str, str] = page.evaluate("(name) => window.connect(name)", header_name)
    return result


def test_authheaders_with_a_lower_case_authorization_key_carry_the_cookie_cross_origin(
    page: tuple[Page, ConsoleLog], cross_origin_service: Service, other_origin: tuple[str, list[str]]
) -> None:
    browser_page, _ = page
    assert _connect(browser_page, other_origin[0], "authorization") == {"state": "connected", "reason": ""}


def test_without_the_cookie_the_refusal_says_no_cookie_arrived_and_where_to_read_why(
    page: tuple[Page, ConsoleLog], cross_origin_service: Service, other_origin: tuple[str, list[str]]
) -> None:
    browser_page, _ = page
    result = _connect(browser_page, other_origin[0], "Authorization")
    assert result["state"] != "connected"
    # what ably-js reports as the cause of its 80019: the service's 401 (retry: the page may log in yet)
    assert result["reason"].startswith("40101 401 not logged in: no session cookie arrived"), result
    assert "docs/troubleshooting.md" in result["reason"] and "'authorization'" in result["reason"]
    browser_page.evaluate("() => window.client.close()")


def test_a_refused_preflight_is_logged_once_naming_the_origin_and_the_setting(
    page: tuple[Page, ConsoleLog], cross_origin_service: Service, other_origin: tuple[str, list[str]]
) -> None:
    browser_page, _ = page
    # The same front-end reached as localhost: another origin, which the service does not trust.
    untrusted = other_origin[0].replace("127.0.0.1", "localhost")
    browser_page.goto(f"{untrusted}/")
    script = "(url) => fetch(url, {headers: {Authorization: '-'}}).then((r) => String(r.status), (e) => e.name)"
    for _ in range(3):
        assert browser_page.evaluate(script, f"{cross_origin_service.base_url}/auth") == "TypeError"  # CORS
    expected = f"CORS refused: origin '{untrusted}' is not in AUTHSERVER_ALLOWED_ORIGINS; add it there to call /auth"
    lines = [line for line in cross_origin_service.log_tail(500).splitlines() if expected in line]
    assert len(lines) == 1, cross_origin_service.log_tail(40)
    assert "WARNING" in lines[0] and "(logged once per origin)" in lines[0]
