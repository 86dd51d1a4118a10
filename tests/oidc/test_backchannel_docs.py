"""The ``curl`` example of ``docs/backchannel-logout.md``, taken from the page itself (so the page cannot
drift) and run against the running service with a logout token signed by the real provider's keys: the
answers the page shows, 200 ``no-store`` and then, for the same token, a 400 replay."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from authserver.http.app import create_app

from .conftest import PAGE_CLIENT_ID, Provider, oidc_env, unique
from conftest import SettingsFactory
from helpers import running_server

pytestmark = pytest.mark.node
PAGE = Path(__file__).resolve().parents[2] / "docs" / "backchannel-logout.md"
PLACEHOLDER = "https://auth.example.com"


def curl_example() -> str:
    """The page's first ``sh`` block under "Try it with curl"."""
    section = PAGE.read_text(encoding="utf-8").split("## Try it with curl", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None and "curl" in block.group(1), "the page's curl example is gone"
    return block.group(1)


def shown_answers() -> list[list[str]]:
    """The lines of the answers the page shows after the example."""
    section = PAGE.read_text(encoding="utf-8").split("## Try it with curl", 1)[1]
    return [block.strip().splitlines() for block in re.findall(r"```http\n(.*?)```", section, re.S)]


def test_the_docs_curl_example_logs_out_once_and_is_refused_as_a_replay(
    shared_provider: Provider, make_settings: SettingsFactory
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    command = curl_example()
    assert PLACEHOLDER in command
    settings = make_settings(OIDC_BACKCHANNEL_LOGOUT_AUDIENCE=PAGE_CLIENT_ID, **oidc_env(shared_provider))
    with running_server(create_app(settings)) as service:
        env = {**os.environ, "LOGOUT_TOKEN": shared_provider.logout_token(sub=unique("doc"))}
        runs = [
            subprocess.run(
                ["bash", "-c", command.replace(PLACEHOLDER, service)],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
            for _ in range(2)
        ]
    ok, replay = shown_answers()
    for shown, got in ((ok, runs[0]), (replay, runs[1])):
        lines = [line.strip() for line in got.strip().splitlines()]
        assert lines[0] == shown[0]  # the status line
        assert {h.lower() for h in shown[1:] if ": " in h} <= {h.lower() for h in lines}  # the headers shown
    assert ok[0] == "HTTP/1.1 200 OK" and replay[0] == "HTTP/1.1 400 Bad Request"
    assert runs[1].strip().splitlines()[-1] == replay[-1]  # the error body, word for word
