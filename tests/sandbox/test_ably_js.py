"""The unmodified ably-js 2.x client (under Node) against the sandbox.

The Node drivers live in ``tests/node/*.mjs``; each prints one JSON result line. They are all started
at once when this module begins (the renewal and expiry scenarios take several token lifetimes) and
each test then asserts on its scenario's result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import KEY, Stack, run_stack

pytestmark = pytest.mark.node

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "node"
NODE_MODULES = Path(os.environ.get("ABLY_JS_NODE_MODULES", ROOT / ".cache" / "node" / "node_modules"))
NODE = shutil.which("node")
#: Seconds. Ably sends AUTH 30 s before expiry and none to shorter tokens (RTN22): 33 s tokens are renewed
#: in band 3 s after issue; 5 s tokens are renewed by reconnecting after DISCONNECTED 40142.
IN_BAND_LIFETIME = 33
SHORT_LIFETIME = 5


def _skip_reason() -> str | None:
    if NODE is None:
        return "node is not installed"
    if not (NODE_MODULES / "ably" / "package.json").is_file():
        return f"the ably npm package is not installed in {NODE_MODULES} (npm install --prefix .cache/node ably@2)"
    return None


@dataclass
class NodeRun:
    script: str
    process: subprocess.Popen[str]

    def result(self, timeout: float = 45) -> dict[str, Any]:
        try:
            stdout, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            pytest.fail(f"{self.script} did not finish within {timeout} s")
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        assert lines, f"{self.script} printed no result; stderr: {stderr[-2000:]}"
        result: dict[str, Any] = json.loads(lines[-1])
        assert result["ok"], f"{self.script} failed: {result.get('error')}\ntrace: {result.get('trace')}"
        return result


def start(script: str, stack: Stack, **settings: Any) -> NodeRun:
    assert NODE is not None
    scenario = {
        "port": stack.sandbox.port,
        "authUrl": stack.auth_url,
        "key": f"{KEY.name}:{KEY.secret}",
        "suffix": uuid.uuid4().hex[:8],
        "format": "json",
        "lifetime": SHORT_LIFETIME,
        **settings,
    }
    env = {**os.environ, "ABLY_JS_NODE_MODULES": str(NODE_MODULES), "SCENARIO": json.dumps(scenario)}
    process = subprocess.Popen(
        [NODE, str(NODE_DIR / script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return NodeRun(script, process)


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, NodeRun]]:
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with run_stack() as stack:
        started = {
            "pubsub-json": start("pubsub.mjs", stack),
            "pubsub-msgpack": start("pubsub.mjs", stack, format="msgpack"),
            "renewal-json": start("renewal.mjs", stack, renewals=3, budgetMs=30000, lifetime=IN_BAND_LIFETIME),
            "renewal-msgpack": start(
                "renewal.mjs", stack, format="msgpack", renewals=3, budgetMs=30000, lifetime=IN_BAND_LIFETIME
            ),
            "expiry": start("expiry.mjs", stack, format="msgpack", expiries=2),
            "token-request": start("token_request.mjs", stack, lifetime=IN_BAND_LIFETIME),
            "revocation": start("revocation.mjs", stack, format="msgpack"),
        }
        try:
            yield started
        finally:
            for run in started.values():
                if run.process.poll() is None:
                    run.process.kill()
                run.process.communicate()


@pytest.mark.parametrize("wire_format", ["json", "msgpack"])
def test_connect_attach_publish_subscribe_presence_and_denied_publish(
    runs: dict[str, NodeRun], wire_format: str
) -> None:
    result = runs[f"pubsub-{wire_format}"].result()
    assert result["aliceClientId"] == "alice"
    assert [(m["name"], m["data"], m["clientId"]) for m in result["received"]] == [
        ("greeting", "hello from js", "alice"),
        ("binary", [1, 2, 3], "alice"),
    ]
    assert all(m["connectionIdMatches"] and m["hasId"] and m["hasTimestamp"] for m in result["received"])
    assert result["watcherModes"] == ["subscribe", "presence_subscribe"]
    assert result["presenceEvents"] == ["enter:alice", "leave:alice"]
    assert result["members"] == [{"clientId": "alice", "data": {"mood": "happy"}}]
    assert result["denied"]["code"] == 40160
    assert result["denied"]["statusCode"] == 401


@pytest.mark.parametrize("wire_format", ["json", "msgpack"])
def test_tokens_are_renewed_in_band_at_least_three_times(runs: dict[str, NodeRun], wire_format: str) -> None:
    result = runs[f"renewal-{wire_format}"].result()
    assert result["renewals"] >= 3
    assert result["sameConnection"]
    assert [c for c in result["changes"] if c["current"] in ("disconnected", "suspended", "failed")] == []
    assert all(c["reason"] is None for c in result["changes"] if c["current"] == "connected")
    assert result["received"] == result["published"] + 1
    assert result["members"] == [result["clientId"]]


def test_a_short_token_gets_no_auth_but_40142_at_expiry_and_resumes(runs: dict[str, NodeRun]) -> None:
    """5 s tokens: no AUTH (Ably prompts only tokens over 30 s); ably-js renews at every 40142 and resumes."""
    result = runs["expiry"].result()
    assert result["expiries"] >= 2
    assert result["sameConnection"]
    assert result["received"] == ["missed-1", "after"]
    assert result["channelState"] == "attached"
    disconnects = [c["reason"] for c in result["changes"] if c["current"] == "disconnected"]
    assert disconnects and set(disconnects) == {40142}
    assert not any(c["current"] == "failed" for c in result["changes"])
    assert not any(c["previous"] == "connected" and c["current"] == "connected" for c in result["changes"])


def test_token_request_is_exchanged_through_request_token_and_renewed_on_the_same_connection(
    runs: dict[str, NodeRun],
) -> None:
    result = runs["token-request"].result()
    assert result["tokenLooksOpaque"]
    assert result["received"] == [{"data": "via token request", "clientId": result["clientId"]}]
    assert result["renewals"] >= 1
    assert result["tokenChanged"]
    # connect, then only in-band renewals (connected -> connected), none of them carrying an error
    assert [(c["previous"], c["current"], c["reason"]) for c in result["changes"]] == [
        ("initialized", "connecting", None),
        ("connecting", "connected", None),
    ] + [("connected", "connected", None)] * result["renewals"]
    assert [c["connectionId"] for c in result["changes"][1:]] == [result["connectionId"]] * (1 + result["renewals"])
    assert result["sameConnection"]


def test_revocation_disconnects_40141_and_the_old_token_is_refused(runs: dict[str, NodeRun]) -> None:
    result = runs["revocation"].result()
    revoked = result["result"]
    assert (revoked["successCount"], revoked["failureCount"]) == (1, 0)
    assert any(c["current"] == "disconnected" and c["reason"] == 40141 for c in result["changes"])
    assert result["sameConnection"]
    assert result["newTokenDiffers"]
    assert (result["oldTokenStatus"], result["oldTokenCode"]) == (401, "40141")
