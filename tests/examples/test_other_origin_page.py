"""examples/other-origin: a plain page on another origin than the service logs in at the development
identity provider (code flow with PKCE, in the browser) and connects ably-js with the user's access token
as a bearer; it stays connected across token renewals, in Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from .conftest import DevStack, expect_connected_across_renewals, screenshot
from helpers import log_in_at_the_provider

pytestmark = [pytest.mark.browser, pytest.mark.node]


def test_the_other_origin_page_logs_in_at_the_provider_and_stays_connected(dev_stack: DevStack, page: Page) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{dev_stack.examples}/other-origin/")
    expect(page.locator("#state")).to_have_text("not logged in")
    page.get_by_role("button", name="Log in with Dev IdP").click()
    log_in_at_the_provider(page, "alice")

    expect_connected_across_renewals(page, "alice", "hello from another origin")
    assert page.evaluate("location.origin") != dev_stack.service
    assert errors == []
    screenshot(page, "example-other-origin")
