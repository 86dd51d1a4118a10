"""``scripts/serve --idp``: the development identity provider in one command (docs/development-idp.md).

The service trusts the provider (its issuer, audience and role claim), the login page offers "Log in with
Dev IdP", and ``scripts/idp-token NAME`` prints a demo user's access token for curl and the backends."""

from __future__ import annotations

import json
import subprocess

import pytest
from playwright.sync_api import Page, expect

from .conftest import RENEWALS, REPO, DevStack, screenshot
from helpers import log_in_at_the_provider

pytestmark = [pytest.mark.node]


def test_idp_token_gives_a_demo_users_token_that_auth_turns_into_an_ably_token(dev_stack: DevStack) -> None:
    alice = json.loads(dev_stack.run('curl -s -H "Authorization: Bearer $(scripts/idp-token alice)" '
                                     f"{dev_stack.service}/auth"))  # fmt: skip
    assert alice["clientId"] == "alice"
    assert json.loads(alice["capability"])["private:alice"] == ["*"]  # role user, from the provider's roles claim
    bob = json.loads(
        dev_stack.run(f'curl -s -H "Authorization: Bearer $(scripts/idp-token bob)" {dev_stack.service}/auth')
    )
    assert json.loads(bob["capability"]) == {"*": ["*"]}  # bob is an admin at the provider


def test_idp_token_says_when_no_provider_runs(dev_stack: DevStack) -> None:
    missing = subprocess.run(
        [str(REPO / "scripts" / "idp-token"), "alice"],
        env={**dev_stack.env, "IDP_STATE_FILE": "/nonexistent/dev-idp.json"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode != 0
    assert "start `scripts/serve --idp` first" in missing.stderr


def test_a_provider_token_is_exchanged_for_an_ably_token_with_curl(dev_stack: DevStack) -> None:
    """docs/use-from-your-app.md's backend token exchange, with the development provider's token."""
    body = json.loads(
        dev_stack.run(
            f"curl -s {dev_stack.service}/token"
            " -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange"
            ' -d subject_token="$(scripts/idp-token alice)"'
            " -d subject_token_type=urn:ietf:params:oauth:token-type:access_token"
            """ -d capability='{"chat:lobby":["publish"]}' -d ttl=600000"""
        )
    )
    assert body["token_type"] == "Bearer" and body["clientId"] == "alice"
    assert json.loads(body["capability"]) == {"chat:lobby": ["publish"]}


@pytest.mark.browser
def test_the_page_offers_log_in_with_the_dev_provider(dev_stack: DevStack, page: Page) -> None:
    page.goto(f"{dev_stack.service}/")
    button = page.get_by_test_id("provider-login")
    expect(button).to_have_text("Log in with Dev IdP", timeout=10_000)
    button.click()
    log_in_at_the_provider(page, "bob")
    page.wait_for_url(f"{dev_stack.service}/", timeout=15_000)
    expect(page.get_by_test_id("connection-state")).to_have_text("connected", timeout=15_000)
    expect(page.get_by_test_id("client-id")).to_have_text("bob")
    expect(page.get_by_test_id("identity-source")).to_have_text(f"(provider: oidc:{dev_stack.issuer}, role admin)")
    page.wait_for_function(
        "(n) => Number(document.querySelector('[data-testid=\"renewal-count\"]').textContent) >= n",
        arg=RENEWALS,
        timeout=30_000,
    )
    screenshot(page, "page-dev-idp")
