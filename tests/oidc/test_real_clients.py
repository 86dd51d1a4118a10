"""The real Ably clients with an upstream bearer token in their auth headers, against the sandbox:
they stay connected across in-band renewals (33 s tokens: the sandbox sends AUTH 30 s before expiry,
as Ably does, so a renewal about every 3 s), the snippets of docs/use-from-your-app.md."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from ably import AblyRest

from authserver.cli.smoke import stay_connected
from authserver.core.keys import AblyKey
from authserver.http.app import create_app
from authserver.sandbox import create_sandbox_app

from .conftest import NODE, NODE_MODULES, Provider, oidc_env, unique
from conftest import SettingsFactory
from helpers import KEY_NAME, KEY_SECRET, running_server

pytestmark = pytest.mark.node
RENEWALS = 3


@dataclass
class Stack:
    service: str
    sandbox: str

    @property
    def sandbox_port(self) -> int:
        return int(self.sandbox.rsplit(":", 1)[1])


@pytest.fixture
def stack(shared_provider: Provider, make_settings: SettingsFactory) -> Iterator[Stack]:
    settings = make_settings(TOKEN_TTL="33", **oidc_env(shared_provider))
    sandbox = create_sandbox_app([AblyKey(KEY_NAME, KEY_SECRET)])
    with running_server(create_app(settings)) as service, running_server(sandbox) as sandbox_url:
        yield Stack(service, sandbox_url)


def test_ably_python_with_a_bearer_in_auth_headers_stays_connected_across_renewals(
    shared_provider: Provider, stack: Stack
) -> None:
    token = shared_provider.sign(sub="py-alice", lifetime=600)
    options = {"endpoint": "127.0.0.1", "port": stack.sandbox_port, "tls": False}
    result = asyncio.run(
        stay_connected(
            stack.service,
            None,
            options,
            renewals=RENEWALS,
            timeout=90,
            channel=f"chat:{unique('py')}",
            auth_headers={"Authorization": f"Bearer {token}"},
        )
    )
    assert result == 0


def test_ably_python_rest_with_auth_url_and_auth_headers(shared_provider: Provider, stack: Stack) -> None:
    """docs/use-from-your-app.md's ably-python snippet."""
    id_token = shared_provider.sign(sub="py-bob", lifetime=600)

    async def snippet() -> object:
        client = AblyRest(
            auth_url=f"{stack.service}/auth",
            auth_headers={"Authorization": f"Bearer {id_token}"},
            endpoint="127.0.0.1",
            port=stack.sandbox_port,
            tls=False,
        )
        try:
            return await client.auth.authorize()
        finally:
            await client.close()

    details = asyncio.run(snippet())
    assert details.client_id == "py-bob"  # type: ignore[attr-defined]


def test_ably_js_with_a_bearer_in_auth_headers_stays_connected_across_renewals(
    shared_provider: Provider, stack: Stack
) -> None:
    assert NODE is not None
    scenario = {
        "port": stack.sandbox_port,
        "authUrl": f"{stack.service}/auth",
        "bearer": shared_provider.sign(sub="js-alice", lifetime=600),
        "channel": f"chat:{unique('js')}",
        "renewals": RENEWALS,
    }
    env = {**os.environ, "ABLY_JS_NODE_MODULES": str(NODE_MODULES), "SCENARIO": json.dumps(scenario)}
    script = str(__import__("pathlib").Path(__file__).with_name("bearer_renewal.mjs"))
    done = subprocess.run([NODE, script], env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stderr[-2000:]
    result = json.loads(lines[-1])
    assert result["ok"], result
    assert result["renewals"] >= RENEWALS
    assert result["sameConnection"] and result["clientId"] == "js-alice"
    assert set(result["states"]) <= {"connecting", "connected", "update"}, result["states"]
    assert result["received"] == result["published"]


def test_the_readme_backend_snippet_exchanges_a_provider_token_with_curl(
    shared_provider: Provider, stack: Stack
) -> None:
    """docs/use-from-your-app.md "A backend: token exchange": the curl command, against the running service."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    access_token = shared_provider.client_credentials_token()
    command = [
        curl, "-s", f"{stack.service}/token",
        "-d", "grant_type=urn:ietf:params:oauth:grant-type:token-exchange",
        "-d", f"subject_token={access_token}",
        "-d", "subject_token_type=urn:ietf:params:oauth:token-type:access_token",
        "-d", 'capability={"chat:lobby":["publish"]}', "-d", "ttl=600000",
    ]  # fmt: skip
    body = json.loads(subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout)
    assert body["token_type"] == "Bearer" and body["clientId"] == "backend-worker"
    assert json.loads(body["capability"]) == {"chat:lobby": ["publish"]}
    assert body["expires_in"] == 600  # the ttl asked for (ms), within the role's max_ttl
