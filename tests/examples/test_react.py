"""examples/react: React with ably-js's own ``AblyProvider``, ``ChannelProvider`` and hooks, built from the
example's npm lock with esbuild (``npm run build``), logs in at the development provider and stays connected
across token renewals, in Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from .conftest import (
    REPO,
    DevStack,
    expect_connected_across_renewals,
    install_example,
    screenshot,
)
from helpers import log_in_at_the_provider

pytestmark = [pytest.mark.browser, pytest.mark.node]


def test_the_react_example_builds_logs_in_and_stays_connected(dev_stack: DevStack, page: Page) -> None:
    install_example(REPO / "examples" / "react")
    dev_stack.run("npm run build --prefix examples/react", timeout=120)
    assert (REPO / "examples" / "react" / "dist" / "app.js").is_file()

    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{dev_stack.examples}/react/")
    expect(page.locator("#state")).to_have_text("not logged in", timeout=10_000)
    page.get_by_role("button", name="Log in with Dev IdP").click()
    log_in_at_the_provider(page, "alice")

    expect_connected_across_renewals(page, "alice", "hello from React")
    assert errors == []
    screenshot(page, "example-react")
