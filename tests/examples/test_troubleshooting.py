"""docs/troubleshooting.md's explanations, shown on the live development stack: a preflight from an origin
that is not listed gets no CORS answer, and ably-js in Chromium takes the session cookie cross-origin only
when ``authHeaders`` spells its key ``authorization`` in lower case."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import Page

from .conftest import DevStack

pytestmark = [pytest.mark.browser, pytest.mark.node]

PREFLIGHT = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}


def test_a_preflight_from_an_unlisted_origin_gets_no_cors_answer(dev_stack: DevStack) -> None:
    listed = httpx.options(f"{dev_stack.service}/auth", headers={"Origin": dev_stack.examples, **PREFLIGHT})
    assert listed.headers["access-control-allow-origin"] == dev_stack.examples
    other = f"http://localhost:{dev_stack.port}"  # another origin: the same server by another name
    refused = httpx.options(f"{dev_stack.service}/auth", headers={"Origin": other, **PREFLIGHT})
    assert "access-control-allow-origin" not in refused.headers
    assert refused.status_code >= 400


# In the page (on the examples' origin, same site as the service): log in at the service with a
# credentialed fetch, then connect one ably-js client with the given authHeaders and report how it went.
CONNECT = """async ([service, clientOptions, headers]) => {
  const login = await fetch(`${service}/login`, {
    method: 'POST', credentials: 'include', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'dana', password: 'any password' }),
  });
  if (!login.ok) return { login: login.status };
  const client = new Ably.Realtime({ ...clientOptions, authUrl: `${service}/auth`, authHeaders: headers });
  return await new Promise((resolve) => {
    const done = (state) => {
      const reason = client.connection.errorReason;
      resolve({ state, clientId: client.auth.clientId, cause: reason?.cause?.code ?? reason?.code });
      client.close();
    };
    client.connection.once('connected', () => done('connected'));
    client.connection.once('disconnected', () => done('disconnected'));
    client.connection.once('failed', () => done('failed'));
  });
}"""


def connect_with(page: Page, stack: DevStack, headers: dict[str, str]) -> dict[str, Any]:
    page.goto(f"{stack.examples}/same-origin/")  # any page of the examples' origin, with ably-js loaded
    options = httpx.get(f"{stack.service}/client-config", timeout=10).json()["clientOptions"]
    result: dict[str, Any] = page.evaluate(CONNECT, [stack.service, options, headers])
    return result


def test_the_cookie_goes_cross_origin_only_with_a_lower_case_authorization_key(dev_stack: DevStack, page: Page) -> None:
    # An app's own bearer (not a token of a trusted provider) beside the cookie is ignored: the session decides.
    lower = connect_with(page, dev_stack, {"authorization": "Bearer my-apps-own-token"})
    assert lower == {"state": "connected", "clientId": "dana", "cause": None}

    upper = connect_with(page, dev_stack, {"Authorization": "Bearer my-apps-own-token"})
    assert upper["state"] == "disconnected"  # no cookie went: /auth said 401, so ably-js retries
    assert upper["cause"] == 40101
