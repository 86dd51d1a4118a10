"""examples/same-origin: a plain page on the service's own origin (the examples' server forwards /login,
/auth and the rest to authserver, as a reverse proxy would) logs in with ``POST /login`` and connects
ably-js with ``authUrl: '/auth'``: the session cookie goes along with every renewal, in Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from .conftest import DevStack, expect_connected_across_renewals, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.node]


def test_the_same_origin_page_logs_in_with_the_cookie_and_stays_connected(dev_stack: DevStack, page: Page) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{dev_stack.examples}/same-origin/")
    page.get_by_label("Name").fill("carol")
    page.get_by_label("Password").fill("any password")  # demo login: development mode
    page.get_by_role("button", name="Log in").click()

    expect_connected_across_renewals(page, "carol", "hello from the same origin")
    assert any(cookie["name"] == "authserver_session" for cookie in page.context.cookies())
    assert errors == []
    screenshot(page, "example-same-origin")
