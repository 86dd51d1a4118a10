"""Revocation end to end: the token service, the sandbox as Ably, the real ably-python client.

A connected client whose user logs out everywhere, is disabled or changes password is disconnected
with 40141 within 2 s and does not come back; another user is untouched; a role change renews the
token in band (``allowReauthMargin``) with the new capability; revocations asked for while Ably is
unreachable are delivered once it answers, also by a restarted service.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
import jwt
import pytest
from ably import AblyRealtime
from ably.transport import websockettransport

from authserver import cli
from authserver.cli.smoke import connect_with_port
from authserver.core.keys import AblyKey
from authserver.http.app import create_app
from authserver.identity.passwords import Passwords
from authserver.sandbox import create_sandbox_app

from conftest import SettingsFactory
from helpers import API_KEY, KEY_NAME, KEY_SECRET, all_revoked, live_connections, running_server, until

KEY = AblyKey(KEY_NAME, KEY_SECRET)
COOKIE = "authserver_session"


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@dataclass
class World:
    service_url: str
    sandbox_url: str
    sandbox_app: Any
    service_app: Any

    @property
    def sandbox(self) -> Any:
        return self.sandbox_app.state.sandbox

    def login(self, name: str) -> str:
        response = httpx.post(f"{self.service_url}/login", json={"username": name, "password": "correct horse"})
        response.raise_for_status()
        return response.cookies[COOKIE]

    def post(self, path: str, cookie: str) -> httpx.Response:
        return httpx.post(f"{self.service_url}{path}", cookies={COOKIE: cookie}, headers={"Origin": self.service_url})


def service_env(sandbox_url: str, database: str) -> dict[str, str]:
    return {
        "ABLY_ENDPOINT": sandbox_url,
        "ABLY_REVOCABLE_TOKENS": "true",
        "TOKEN_IAT_MARGIN": "5",
        "TOKEN_TTL": "600",
        # changes made by the CLI (no Redis here) reach the service's session memory at once
        "AUTHSERVER_SESSION_RECHECK": "0",
        "DATABASE_URL": f"sqlite:///{database}",
    }


@pytest.fixture
def world(make_settings: SettingsFactory, fast_passwords: Passwords, tmp_path: Any) -> Iterator[World]:
    sandbox_app = create_sandbox_app([KEY])
    with running_server(sandbox_app) as sandbox_url:
        settings = make_settings(**service_env(sandbox_url, str(tmp_path / "authserver.db")))
        app = create_app(settings, passwords=fast_passwords)
        for name in ("alice", "bob"):
            asyncio.run(app.state.services.users.add(name, "correct horse", role=None, client_id=None, now=0.0))
        with running_server(app) as service_url:
            yield World(service_url, sandbox_url, sandbox_app, app)


@pytest.fixture
def operator(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    """``authserver ...`` on the same database and sandbox as the running service."""
    environ = {**service_env(world.sandbox_url, str(tmp_path / "authserver.db")), "ABLY_API_KEY": API_KEY}
    monkeypatch.chdir(tmp_path)

    def run(*argv: str, stdin: TextIO | None = None) -> int:
        return cli.main(list(argv), environ=environ, stdin=stdin)

    return run


@pytest.fixture(autouse=True)
def _ws_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(websockettransport.WebSocketTransport, "connect", connect_with_port)


def client_for(world: World, cookie: str) -> Any:
    port = int(world.sandbox_url.rsplit(":", 1)[1])
    return AblyRealtime(
        auth_url=f"{world.service_url}/auth",
        auth_headers={"Cookie": f"{COOKIE}={cookie}"},
        endpoint="127.0.0.1",
        port=port,
        tls=False,
        use_binary_protocol=False,
    )


def state(client: Any) -> str:
    return str(client.connection.state.value)


async def connected(client: Any) -> None:
    await until(lambda: state(client) == "connected", timeout=10, what="connected")


def live(world: World, client_id: str) -> bool:
    """Whether the sandbox holds a live (transport attached) connection of ``client_id``.

    Observed at the sandbox (Ably's side): after a 40141 whose renewal the authUrl refuses, ably-python
    3.1 keeps reporting CONNECTED while it has no transport (a client bug), so its own state says nothing.
    """
    return live_connections(world.sandbox, client_id) > 0


def revoked(world: World, client_id: str) -> bool:
    """Whether every connection of ``client_id`` the sandbox holds has a revoked token."""
    return all_revoked(world.sandbox, client_id)


async def stays_away(world: World, client_id: str, seconds: float) -> None:
    """``client_id`` gets no live connection back for ``seconds`` (its authUrl refuses it)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert not live(world, client_id)
        await asyncio.sleep(0.05)


async def close(*clients: Any) -> None:
    for client in clients:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), timeout=5)


def revoke_and_watch(world: World, victim_cookie: str, act: Any) -> float:
    """Connect the victim (alice) and a bystander (bob), ``act()``; return how long until alice's
    connection was dropped for a revoked token (40141), after checking that it stays away and bob stays."""

    async def scenario() -> float:
        victim = client_for(world, victim_cookie)
        bystander = client_for(world, world.login("bob"))
        try:
            await until(lambda: live(world, "alice") and live(world, "bob"), timeout=10, what="both connected")
            started = time.monotonic()
            await asyncio.to_thread(act)
            await until(lambda: not live(world, "alice"), timeout=10, what="alice disconnected")
            took = time.monotonic() - started
            assert revoked(world, "alice")  # dropped with 40141, not for another reason
            await stays_away(world, "alice", 3.0)
            assert live(world, "bob") and state(bystander) == "connected"
            return took
        finally:
            await close(victim, bystander)

    return asyncio.run(asyncio.wait_for(scenario(), timeout=60))


def test_log_out_everywhere_disconnects_the_users_other_device_with_40141_and_it_stays_out(world: World) -> None:
    device_a, device_b = world.login("alice"), world.login("alice")
    took = revoke_and_watch(world, device_a, lambda: world.post("/logout?everywhere=true", device_b).raise_for_status())
    assert took < 2.0


def test_logout_revokes_only_that_sessions_tokens(world: World) -> None:
    """Logging out on device B takes back B's tokens; device A, another session of alice, stays up."""
    device_a, device_b = world.login("alice"), world.login("alice")

    def sessions_live() -> int:
        return sum(1 for c in list(world.sandbox.connections) if c.identity.client_id == "alice" and c.transport)

    async def scenario() -> None:
        a, b = client_for(world, device_a), client_for(world, device_b)
        try:
            await until(lambda: sessions_live() == 2, timeout=10, what="both devices connected")
            await asyncio.to_thread(lambda: world.post("/logout", device_b).raise_for_status())
            await until(lambda: sessions_live() == 1, timeout=5, what="device B dropped")
            await asyncio.sleep(2.0)
            assert sessions_live() == 1 and state(a) == "connected"
            survivor = next(c for c in world.sandbox.connections if c.identity.client_id == "alice" and c.transport)
            assert not world.sandbox.revocations.revoked(survivor.grant, now_ms=world.sandbox.now_ms())
        finally:
            await close(a, b)

    asyncio.run(asyncio.wait_for(scenario(), timeout=60))


def test_disabling_the_account_disconnects_it_within_2_s(world: World, operator: Any) -> None:
    took = revoke_and_watch(world, world.login("alice"), lambda: operator("users", "disable", "alice"))
    assert took < 2.0


def test_a_password_change_disconnects_it_within_2_s(world: World, operator: Any) -> None:
    import io

    def change() -> None:
        assert operator("users", "set-password", "alice", stdin=io.StringIO("new horse\n")) == 0

    took = revoke_and_watch(world, world.login("alice"), change)
    assert took < 2.0


def test_a_user_who_logs_out_and_straight_back_in_stays_connected(world: World) -> None:
    """``issuedBefore`` allows for the back-dated ``iat``: the new session's token is not revoked too."""
    first = world.login("alice")

    async def scenario() -> None:
        world.post("/logout?everywhere=true", first).raise_for_status()
        again = client_for(world, world.login("alice"))
        try:
            await until(lambda: live(world, "alice"), timeout=10, what="alice connected again")
            await asyncio.sleep(2.0)  # the revocation is delivered within this
            assert live(world, "alice") and not revoked(world, "alice")
        finally:
            await close(again)

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))


def test_a_role_change_renews_in_band_with_the_new_capability(world: World, operator: Any) -> None:
    cookie = world.login("alice")

    async def scenario() -> None:
        client = client_for(world, cookie)
        try:
            await connected(client)
            before = client.auth.token_details.token
            assert "chat:*" in json.loads(jwt.decode(before, options={"verify_signature": False})["x-ably-capability"])
            await asyncio.to_thread(operator, "users", "set-role", "alice", "admin")

            def renewed() -> bool:
                return bool(client.auth.token_details.token != before)

            await until(renewed, timeout=10, what="an in-band renewal")
            claims = jwt.decode(client.auth.token_details.token, options={"verify_signature": False})
            assert json.loads(claims["x-ably-capability"]) == {"*": ["*"]}  # admin's capability
            assert state(client) == "connected" and live(world, "alice")
            connection = next(c for c in world.sandbox.connections if c.identity.client_id == "alice")
            assert connection.grant.capability.to_json() == '{"*":["*"]}'  # the sandbox holds the new token
        finally:
            await close(client)

    asyncio.run(asyncio.wait_for(scenario(), timeout=60))


def test_the_jwt_carries_a_session_revocation_key_and_a_back_dated_iat(world: World) -> None:
    cookie = world.login("alice")
    details = httpx.get(f"{world.service_url}/auth", cookies={COOKIE: cookie}).json()
    claims = jwt.decode(details["token"], KEY_SECRET, algorithms=["HS256"])
    assert claims["x-ably-revocation-key"].startswith("s:")
    assert cookie not in claims["x-ably-revocation-key"]
    assert claims["iat"] <= time.time() - 4  # back-dated by TOKEN_IAT_MARGIN (5 s)
    assert claims["exp"] - claims["iat"] == 605  # TOKEN_TTL from now, plus the margin


def test_revocations_asked_for_while_ably_is_down_are_delivered_when_it_is_back_even_after_a_restart(
    make_settings: SettingsFactory, fast_passwords: Passwords, tmp_path: Any
) -> None:
    """The outbox survives Ably being unreachable and the service stopping: a restarted service delivers."""
    sandbox_app = create_sandbox_app([KEY])
    database = str(tmp_path / "authserver.db")
    with running_server(sandbox_app) as sandbox_url:
        sandbox_port = port_of(sandbox_url)
        pass  # the port is known; the sandbox is down from here on
    settings = make_settings(**service_env(sandbox_url, database))
    first = create_app(settings, passwords=fast_passwords)
    asyncio.run(first.state.services.users.add("alice", "correct horse", role=None, client_id=None, now=0.0))
    asyncio.run(first.state.services.users.add("carol", "correct horse", role=None, client_id=None, now=0.0))
    with running_server(first) as url:
        world = World(url, sandbox_url, sandbox_app, first)
        old_token = httpx.get(f"{url}/auth", cookies={COOKIE: world.login("alice")}).json()["token"]
        world.post("/logout?everywhere=true", world.login("alice")).raise_for_status()
        with running_server(sandbox_app, port=sandbox_port):  # Ably is back while this service runs
            sandbox = sandbox_app.state.sandbox
            deadline = time.monotonic() + 20  # the backoff after failures is at most a few seconds here
            while not sandbox.revocations.find(_grant(sandbox, old_token)):
                assert time.monotonic() < deadline, "the queued revocation was not delivered"
                time.sleep(0.05)
        # Ably is down again; carol logs out everywhere and the service stops with that revocation queued ...
        carol = world.login("carol")
        carol_token = httpx.get(f"{url}/auth", cookies={COOKIE: carol}).json()["token"]
        world.post("/logout?everywhere=true", carol).raise_for_status()
    # ... a new service on the same database delivers it once Ably answers.
    second = create_app(make_settings(**service_env(sandbox_url, database)), passwords=fast_passwords)
    with running_server(sandbox_app, port=sandbox_port), running_server(second):
        sandbox = sandbox_app.state.sandbox
        deadline = time.monotonic() + 10
        while not sandbox.revocations.find(_grant(sandbox, carol_token)):
            assert time.monotonic() < deadline, "the restarted service did not deliver the queued revocation"
            time.sleep(0.05)
        with pytest.raises(Exception) as refused:
            sandbox.judge.judge(carol_token, now_ms=sandbox.now_ms())
        assert getattr(refused.value, "code", None) == 40141
        deadline = time.monotonic() + 5
        while asyncio.run(second.state.services.storage.outbox.pending()):
            assert time.monotonic() < deadline
            time.sleep(0.05)


def _grant(sandbox: Any, token: str) -> Any:
    """The grant of ``token`` as the sandbox reads it, revoked or not."""
    from authserver.sandbox.judge import TokenJudge
    from authserver.sandbox.revocation import Revocations

    none = Revocations(1, max_token_ttl_ms=sandbox.limits.max_token_ttl_ms)
    unrevoked = TokenJudge(sandbox.keyring, sandbox.limits, issued=sandbox.issued, revocations=none)
    return unrevoked.judge(token, now_ms=sandbox.now_ms())


def test_a_skewed_issuer_still_connects_thanks_to_the_back_dated_iat(world: World) -> None:
    """The sandbox's clock 4 s behind the service's: the token's iat (back-dated 5 s) is not in its future."""
    world.sandbox.clock_offset = -4.0

    async def scenario() -> None:
        client = client_for(world, world.login("alice"))
        try:
            await until(lambda: live(world, "alice"), timeout=10, what="alice connected")
        finally:
            await close(client)

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))


def test_a_jwt_with_a_future_iat_fails_the_client_with_40001_instead_of_looping(world: World) -> None:
    """The sandbox 60 s behind: Ably's 40001 (not a renewable 4014x); ably-python goes FAILED and stays
    there, instead of fetching another token from the same skewed issuer again and again."""
    world.sandbox.clock_offset = -60.0

    async def scenario() -> None:
        client = client_for(world, world.login("alice"))
        try:
            await until(lambda: state(client) == "failed", timeout=10, what="FAILED")
            assert client.connection.error_reason.code == 40001
            await asyncio.sleep(1.0)
            assert state(client) == "failed" and not live(world, "alice")  # terminal: no renewal loop
        finally:
            await close(client)

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))


def test_authserver_revoke_takes_back_a_users_tokens_at_once(world: World, operator: Any) -> None:
    cookie = world.login("alice")
    token = httpx.get(f"{world.service_url}/auth", cookies={COOKIE: cookie}).json()["token"]
    assert operator("revoke", "--user", "alice") == 0
    sandbox = world.sandbox
    assert sandbox.revocations.revoked(_grant(sandbox, token), now_ms=sandbox.now_ms())  # delivered by the CLI
    # the session was not ended: a token minted after the second the CLI's cutoff covers works
    time.sleep(1.1)
    fresh = httpx.get(f"{world.service_url}/auth", cookies={COOKIE: cookie}).json()["token"]
    assert not sandbox.revocations.revoked(_grant(sandbox, fresh), now_ms=sandbox.now_ms())


def test_authserver_revoke_of_one_session_and_before_a_time(world: World, operator: Any) -> None:
    cookie = world.login("alice")
    token = httpx.get(f"{world.service_url}/auth", cookies={COOKIE: cookie}).json()["token"]
    session_key = jwt.decode(token, KEY_SECRET, algorithms=["HS256"])["x-ably-revocation-key"]
    ten_minutes_ago = str(int(time.time() * 1000) - 600_000)  # Ably takes at most an hour ago
    assert operator("revoke", "--session", session_key, "--issued-before", ten_minutes_ago) == 0
    sandbox = world.sandbox
    assert not sandbox.revocations.revoked(_grant(sandbox, token), now_ms=sandbox.now_ms())  # issued later
    assert operator("revoke", "--session", session_key) == 0
    assert sandbox.revocations.revoked(_grant(sandbox, token), now_ms=sandbox.now_ms())
    assert operator("revoke", "--user", "nobody") == 1


def test_time_sync_measures_the_offset_to_ablys_clock_applies_it_and_readyz_judges_it(
    make_settings: SettingsFactory, fast_passwords: Passwords, tmp_path: Any
) -> None:
    """ABLY_TIME_SYNC: the offset to the sandbox's ``/time`` (here 40 s behind this host) is measured at
    start-up, exported, applied to ``iat``, and beyond ABLY_TIME_SYNC_MAX_OFFSET ``/readyz`` fails."""
    sandbox_app = create_sandbox_app([KEY])
    sandbox_app.state.sandbox.clock_offset = -40.0
    with running_server(sandbox_app) as sandbox_url:
        env = service_env(sandbox_url, str(tmp_path / "authserver.db"))
        settings = make_settings(**env, ABLY_TIME_SYNC="true", ABLY_TIME_SYNC_MAX_OFFSET="30")
        app = create_app(settings, passwords=fast_passwords)
        asyncio.run(app.state.services.users.add("alice", "correct horse", role=None, client_id=None, now=0.0))
        with running_server(app) as service_url:
            deadline = time.monotonic() + 10
            offset = None
            while offset is None and time.monotonic() < deadline:
                for line in httpx.get(f"{service_url}/metrics").text.splitlines():
                    if line.startswith("authserver_ably_clock_offset_seconds "):
                        offset = float(line.split()[1])
                if offset is None or offset == 0.0:
                    offset = None
                    time.sleep(0.05)
            assert offset is not None and -42 < offset < -38
            world = World(service_url, sandbox_url, sandbox_app, app)
            token = httpx.get(f"{service_url}/auth", cookies={COOKIE: world.login("alice")}).json()["token"]
            iat = jwt.decode(token, KEY_SECRET, algorithms=["HS256"])["iat"]
            assert abs(iat - (time.time() - 40 - 5)) < 3  # Ably's time, less the margin
            ready = httpx.get(f"{service_url}/readyz")
            assert ready.status_code == 503
            assert "off Ably's" in ready.text


# --- the real ably-js under Node, through the service's authUrl --------------------------------------

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
NODE_MODULES = ROOT / ".cache" / "node" / "node_modules"


def ably_js(world: World, victim_cookie: str, act: Callable[[], object], *, expect: str = "revoked") -> dict[str, Any]:
    """Connect alice (``victim_cookie``) and bob with ably-js under Node, ``act()`` once both are
    connected, and return what the driver (tests/node/revocation_live.mjs) saw."""
    if NODE is None or not (NODE_MODULES / "ably" / "package.json").is_file():
        pytest.skip("node or the ably npm package is missing (scripts/setup installs both)")
    scenario = {
        "port": int(world.sandbox_url.rsplit(":", 1)[1]),
        "authUrl": f"{world.service_url}/auth",
        "victimCookie": victim_cookie,
        "bystanderCookie": world.login("bob"),
        "expect": expect,
        "format": "json",
    }
    env = {**os.environ, "ABLY_JS_NODE_MODULES": str(NODE_MODULES), "SCENARIO": json.dumps(scenario)}
    script = ROOT / "tests" / "node" / "revocation_live.mjs"
    with subprocess.Popen(
        [NODE, str(script)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as driver:
        assert driver.stdin is not None and driver.stdout is not None
        ready = driver.stdout.readline()  # the driver gives up (and prints) within its own time limit
        if not ready.startswith('{"ready"'):
            out, err = driver.communicate(timeout=10)
            pytest.fail(f"ably-js did not connect: {ready}{out}\n{err[-2000:]}")
        driver.stdin.write("go\n")
        driver.stdin.flush()
        act()
        out, err = driver.communicate(timeout=60)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"the driver printed no result; stderr: {err[-2000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert result["ok"], f"{result.get('error')}\ntrace: {result.get('trace')}"
    return result


@pytest.mark.node
@pytest.mark.parametrize(
    ("action", "cause"),
    [("log-out-everywhere", 40301), ("disable", 40300), ("set-password", 40302)],
)
def test_ably_js_is_disconnected_with_40141_within_2_s_and_fails_for_good(
    world: World, operator: Any, action: str, cause: int
) -> None:
    """What ably-js does: DISCONNECTED 40141 (Ably dropped the revoked token), one renewal through the
    authUrl, which refuses it for good (403 with the reason's code), so the client goes FAILED (80019)
    and stays there; bob's connection is not touched."""
    device_a, device_b = world.login("alice"), world.login("alice")
    acts: dict[str, Callable[[], object]] = {
        "log-out-everywhere": lambda: world.post("/logout?everywhere=true", device_b).raise_for_status(),
        "disable": lambda: operator("users", "disable", "alice"),
        "set-password": lambda: operator("users", "set-password", "alice", stdin=io.StringIO("new horse\n")),
    }
    result = ably_js(world, device_a, acts[action])
    assert result["disconnectedMs"] < 2000
    disconnected = next(c for c in result["changes"] if c["code"] == 40141)
    assert disconnected["current"] == "disconnected"
    assert result["settled"] == result["state"] == "failed"  # final: no reconnection attempt after
    assert result["reason"] == {"code": 80019, "statusCode": 403, "cause": cause}
    assert [c["current"] for c in result["changes"]][-1] == "failed"
    assert not live(world, "alice")
    bystander = result["bystander"]
    assert bystander["state"] == "connected" and bystander["sameConnection"] and bystander["states"] == []


@pytest.mark.node
def test_ably_js_gets_the_new_capability_on_a_role_change_without_disconnecting(world: World, operator: Any) -> None:
    """``allowReauthMargin``: Ably sends AUTH, ably-js renews in band from the authUrl, the connection
    stays CONNECTED throughout and the new token carries the new role's capability."""
    result = ably_js(
        world, world.login("alice"), lambda: operator("users", "set-role", "alice", "admin"), expect="renewal"
    )
    assert "chat:*" in json.loads(result["capabilityBefore"])
    assert json.loads(result["capabilityAfter"]) == {"*": ["*"]}
    assert result["state"] == "connected"
    assert {c["current"] for c in result["changes"]} <= {"connected"}  # only UPDATE events, no disconnection
    assert result["bystanderStates"] == []
