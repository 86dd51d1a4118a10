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
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import KEY, UNKNOWN_APP_KEY, Stack, embedded_jwt, jwt_for, run_stack

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
        return f"the ably npm package is not installed in {NODE_MODULES} (scripts/setup --test installs it)"
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


def credentials() -> dict[str, str]:
    """A JWT and an embedded-token JWT for the REST checks, made when the scenario starts."""
    issued_at = int(time.time())
    inner = jwt_for(lifetime=600, now=issued_at)
    return {
        "jwt": jwt_for(lifetime=600, now=issued_at),
        "embeddedToken": embedded_jwt(inner, expires_at=issued_at + 300),
        "unknownAppJwt": jwt_for(lifetime=600, now=issued_at, key=UNKNOWN_APP_KEY),
    }


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
            "claims-json": start("claims.mjs", stack),
            "claims-msgpack": start("claims.mjs", stack, format="msgpack"),
            "presence-claims": start("presence_claims.mjs", stack, format="msgpack"),
            **{
                f"faithful-{wire_format}": start("faithful.mjs", stack, format=wire_format, **credentials())
                for wire_format in ("json", "msgpack")
            },
            **{
                f"continuity-{wire_format}": start("continuity.mjs", stack, format=wire_format)
                for wire_format in ("json", "msgpack")
            },
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


@pytest.mark.parametrize("wire_format", ["json", "msgpack"])
def test_user_claims_arrive_in_messages_and_presence_and_a_forged_one_is_overwritten(
    runs: dict[str, NodeRun], wire_format: str
) -> None:
    result = runs[f"claims-{wire_format}"].result()
    assert result["received"] == [
        {"name": "plain", "extras": {"userClaim": '{"mod":true}'}},
        {"name": "forged", "extras": {"userClaim": '{"mod":true}', "headers": {"a": "b"}}},
    ]
    assert result["presence"] == [{"action": "enter", "extras": {"userClaim": '{"mod":true}'}}]
    assert result["members"] == [{"clientId": "js-mod", "extras": {"userClaim": '{"mod":true}'}}]


def test_presence_carries_the_members_current_user_claim_through_auth_and_into_the_synthesised_leave(
    runs: dict[str, NodeRun],
) -> None:
    """The claim is copied from the member's current token into its presence (Ably JWT docs, channel claims)."""
    result = runs["presence-claims"].result()
    before, after = {"userClaim": "before"}, {"userClaim": "after"}
    assert result["events"] == [
        {"action": "enter", "extras": before},
        {"action": "update", "extras": after},
        {"action": "leave", "extras": after},
    ]
    assert result["members"] == [after]
    assert result["synced"] == [after]


@pytest.mark.parametrize("wire_format", ["json", "msgpack"])
def test_a_publish_flood_beyond_the_claimed_rate_gets_42911_and_the_connection_stays_connected(
    runs: dict[str, NodeRun], wire_format: str
) -> None:
    result = runs[f"claims-{wire_format}"].result()
    assert result["accepted"] >= 2  # within the rate (a burst of one second's worth)
    assert len(result["refused"]) >= 4
    assert {(e["code"], e["statusCode"]) for e in result["refused"]} == {(42911, 429)}
    assert all(e["message"].startswith("Rate limit exceeded; request rejected (nonfatal)") for e in result["refused"])
    assert (result["stateAfterFlood"], result["channelStateAfterFlood"]) == ("connected", "attached")
    assert result["afterWait"] == "ok"
    assert not [c for c in result["changes"] if c["current"] in ("disconnected", "suspended", "failed")]


@pytest.fixture(params=["json", "msgpack"])
def faithful(request: pytest.FixtureRequest, runs: dict[str, NodeRun]) -> dict[str, Any]:
    result = runs[f"faithful-{request.param}"].result(timeout=70)
    failed = {name: check["error"] for name, check in result.items() if isinstance(check, dict) and "error" in check}
    assert not failed, failed
    return result


def test_a_string_that_is_not_a_token_fails_the_client_40101(faithful: dict[str, Any]) -> None:
    """Ably: ERROR 40101 (not the renewable 4014x), so ably-js goes FAILED; REST 401/40101 (RSA4)."""
    check = faithful["notAToken"]
    assert (check["state"], check["reason"]["code"]) == ("failed", 40101)
    assert (check["restError"]["statusCode"], check["restError"]["code"]) == (401, 40101)


def test_a_jwt_for_an_app_that_does_not_exist_is_40400_not_found(faithful: dict[str, Any]) -> None:
    """rest/auth.test.js "JWT request with invalid key" / "... with authCallback and invalid keys": 404/40400."""
    outcomes = faithful["unknownApp"]["outcomes"]
    assert [(o["statusCode"], o["code"]) for o in outcomes] == [(404, 40400), (404, 40400)]


def test_a_capability_upgrade_by_authorize_lets_the_attached_channel_publish(faithful: dict[str, Any]) -> None:
    check = faithful["capabilityUpgrade"]
    assert check["before"]["code"] == 40160
    assert check["after"] is None and check["channelState"] == "attached"


def test_channel_modes_params_and_names_as_the_ably_js_channel_suite_expects(faithful: dict[str, Any]) -> None:
    """channel.test.js: params.modes wins over modes; unknown params dropped; ':hell' is 40010."""
    check = faithful["channelModes"]
    assert check["bothModes"] == ["presence", "subscribe"]
    assert check["bothParams"] == {"modes": "presence,subscribe"}
    assert check["unknownParams"] == {}
    assert "annotation_publish" in check["defaultModes"]
    assert check["invalid"]["code"] == 40010 and check["connectionState"] == "connected"


def test_own_echo_before_ack_and_idempotent_ids(faithful: dict[str, Any]) -> None:
    check = faithful["echoAndIdempotence"]
    assert check["members"] == [check["user"]]  # presence.get() right after enter() sees the member
    assert check["ownAtAck"] == ["mine"]  # the echo was there when publish() resolved
    assert check["seen"] == ["mine", "attempt-0", "marker"]


def test_history_pages_windows_and_until_attach(faithful: dict[str, Any]) -> None:
    check = faithful["history"]
    assert (check["page"], check["hasNext"]) == (["m2", "m1"], True)
    assert (check["next"], check["nextIsLast"]) == (["m0"], True)
    assert check["first"] == ["m2", "m1"]
    assert check["windowed"] == ["m1"]
    assert check["untilAttach"] == ["m2", "m1", "m0"]
    assert check["everything"] == ["after-attach", "m2", "m1", "m0"]


def test_stats_presence_history_and_an_embedded_token(faithful: dict[str, Any]) -> None:
    check = faithful["stats"]
    assert check == {"jwtItems": [], "embeddedItems": [], "presenceHistory": 0}


def test_recover_continues_the_connection_or_reports_80018(faithful: dict[str, Any]) -> None:
    check = faithful["recover"]
    assert check["sameConnection"] is True
    assert check["bogusReason"] == 80018


def test_a_client_holding_only_a_short_token_goes_failed_40171(faithful: dict[str, Any]) -> None:
    """No AUTH for a 4 s token: DISCONNECTED 40142, and without a way to renew, FAILED 40171 (RSA4a)."""
    check = faithful["tokenOnly"]
    assert ["disconnected", 40142] in check["changes"]
    assert check["reason"]["code"] == 40171


def test_a_nonce_may_be_reused_with_a_new_timestamp(faithful: dict[str, Any]) -> None:
    check = faithful["nonceReuse"]
    assert check["nonces"] == [True, True, True]
    assert check["outcomes"][:2] == ["token", "token"]
    assert check["outcomes"][2]["code"] == 40105  # the exact same request again is a replay


def test_unknown_rest_paths_whatever_the_method_are_404_40400(faithful: dict[str, Any]) -> None:
    assert faithful["unknownPaths"]["answers"] == [[404, 40400]] * 3


def test_rewind_replays_the_last_messages_on_attach(faithful: dict[str, Any]) -> None:
    check = faithful["rewind"]
    assert check == {"received": ["r1", "r2"], "params": {"rewind": "2"}}


# -- continuity: rewind backlog, resume, recover (issue 22) -----------------------------------------------


@pytest.fixture(params=["json", "msgpack"])
def continuity(request: pytest.FixtureRequest, runs: dict[str, NodeRun]) -> dict[str, Any]:
    result: dict[str, Any] = runs[f"continuity-{request.param}"].result(timeout=70)
    return result


def _check(result: dict[str, Any], name: str) -> dict[str, Any]:
    check: dict[str, Any] = result[name]
    assert "error" not in check, check["error"]
    return check


def test_rewind_delivers_the_backlog_after_attached_flagged_has_backlog(continuity: dict[str, Any]) -> None:
    """Ably docs, channels/options/rewind; ably-js ``ChannelStateChange.hasBacklog`` from HAS_BACKLOG (1 << 1)."""
    check = _check(continuity, "rewindBacklog")
    backlog = {"hasBacklog": True, "resumed": False}
    assert check["count"] == {"received": ["b1"], "change": backlog, "params": {"rewind": "1"}}
    assert check["number"]["received"] == ["b1"] and check["number"]["change"] == backlog
    assert check["duration"] == {"received": ["b0", "b1"], "change": backlog, "params": {"rewind": "1m"}}
    assert check["empty"] == {
        "received": [],
        "change": {"hasBacklog": False, "resumed": False},
        "params": {"rewind": "1"},
    }


def test_a_rewound_channel_that_resumes_does_not_get_the_backlog_again(continuity: dict[str, Any]) -> None:
    check = _check(continuity, "rewindThenResume")
    assert check["received"] == ["old-0", "old-1", "after"]
    assert check["sameConnection"]
    assert check["attaches"][0] == {"hasBacklog": True, "resumed": False}


def test_an_attach_flagged_attach_resume_gets_no_rewind_backlog(continuity: dict[str, Any]) -> None:
    """ably-js ``realtime/resume`` resume_rewind_1: the flag (RTL4j) suppresses the rewind."""
    check = _check(continuity, "attachResumeFlag")
    assert check["plain"] == {
        "received": [{"foo": "bar", "count": 1}],
        "change": {"hasBacklog": True, "resumed": False},
    }
    assert check["flagged"]["received"] == []
    assert check["flagged"]["change"]["hasBacklog"] is False


def test_recover_reattaches_every_channel_from_the_serial_in_the_key(continuity: dict[str, Any]) -> None:
    """RTN16: each channel resumes from its serial in the recovery key: m2 (received by the crashed
    client after it took the key) and m3 (published after the crash) once, then live m4."""
    check = _check(continuity, "recoverChannels")
    assert check["sameConnection"] and check["reason"] is None
    assert all(held == ["m0", "m1", "m2"] for held in check["held"].values())
    assert len(check["received"]) == 3
    assert all(got == ["m2", "m3", "m4"] for got in check["received"].values()), check["received"]
