"""The revocation outbox and its delivery, on both storage engines, against an Ably stand-in over real
HTTP that answers as told (429, 500, refusals): batches of at most 100 targets, retries with backoff,
rows kept until Ably took them, a refusal that retrying cannot change dropped and logged."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from authserver.core.callers import Identity
from authserver.core.issuance import TokenParams
from authserver.core.keys import AblyKey
from authserver.identity.passwords import Passwords
from authserver.revocation.ablyrest import AblyRestApi, client_options, judge
from authserver.revocation.outbox import CLAIM_LEASE_S, Revoker
from authserver.revocation.targets import MAX_TARGETS_PER_CALL, backoff, batches
from authserver.storage import PendingRevocation, Storage
from authserver.wiring import build_services

from conftest import SettingsFactory
from helpers import FakeClock, running_server

KEY = AblyKey("app.key1", "secret-one-not-real")
OLD_KEY = AblyKey("app.key0", "secret-zero-not-real")


class FakeAbly:
    """Answers revokeTokens with the statuses queued in ``answers`` (then 200), recording each call."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, int]] = []
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    async def revoke(self, request: Request) -> JSONResponse:
        auth = request.headers.get("authorization", "")
        user = base64.b64decode(auth.removeprefix("Basic ")).decode().split(":")[0] if auth else ""
        self.calls.append((request.path_params["key"], user, json.loads(await request.body())))
        if self.answers:
            status, code = self.answers.pop(0)
            return JSONResponse({"error": {"code": code, "statusCode": status, "message": "told so"}}, status)
        return JSONResponse({"successCount": 1, "failureCount": 0, "results": []})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/keys/{key}/revokeTokens", self.revoke, methods=["POST"])])


@pytest.fixture
def ably() -> Iterator[tuple[FakeAbly, str]]:
    fake = FakeAbly()
    with running_server(fake.app(), lifespan="off") as url:
        yield fake, url


def revoker(storage: Storage, url: str, clock: FakeClock, keys: tuple[AblyKey, ...] = (KEY,)) -> Revoker:
    return Revoker(
        storage.outbox,
        keys,
        AblyRestApi(url, timeout=5.0),
        clock=clock,
        issued_before_ms=lambda targets: int(clock()) * 1000,
    )


@pytest.mark.anyio
async def test_a_revocation_is_delivered_once_and_then_forgotten(
    storage: Storage, ably: tuple[FakeAbly, str], clock: FakeClock
) -> None:
    fake, url = ably
    outbox = revoker(storage, url, clock)
    await outbox.revoke(["clientId:alice"], reason="disabled")
    assert await storage.outbox.pending() == 1
    assert await outbox.deliver() == 1
    assert fake.calls == [(KEY.name, KEY.name, {"targets": ["clientId:alice"], "issuedBefore": int(clock()) * 1000})]
    assert await storage.outbox.pending() == 0
    assert await outbox.deliver() == 0 and len(fake.calls) == 1
    await outbox.close()


@pytest.mark.anyio
async def test_429_and_5xx_are_retried_with_backoff_until_ably_takes_it(
    storage: Storage, ably: tuple[FakeAbly, str], clock: FakeClock
) -> None:
    fake, url = ably
    fake.answers = [(429, 42910), (503, 50300)]
    outbox = revoker(storage, url, clock)
    await outbox.revoke(["revocationKey:s:1"], reason="logout")
    assert await outbox.deliver() == 0  # 429: kept, retried after backoff(0) = 1 s
    assert await outbox.deliver() == 0 and len(fake.calls) == 1  # not due yet
    clock.advance(1.0)
    assert await outbox.deliver() == 0  # 503: kept, next attempt after 2 s
    clock.advance(1.5)
    assert await outbox.deliver() == 0 and len(fake.calls) == 2
    clock.advance(0.5)
    assert await outbox.deliver() == 1
    assert len(fake.calls) == 3 and await storage.outbox.pending() == 0
    await outbox.close()


@pytest.mark.anyio
async def test_an_unreachable_ably_keeps_the_rows(storage: Storage, clock: FakeClock) -> None:
    with running_server(FakeAbly().app(), lifespan="off") as url:
        pass  # nothing listens there any more
    outbox = revoker(storage, url, clock)
    await outbox.revoke(["clientId:alice"], reason="password")
    assert await outbox.deliver() == 0
    assert await storage.outbox.pending() == 1
    await outbox.close()


@pytest.mark.anyio
async def test_a_refusal_retrying_cannot_change_is_dropped(
    storage: Storage, ably: tuple[FakeAbly, str], clock: FakeClock
) -> None:
    fake, url = ably
    fake.answers = [(400, 40121)]  # revocation not enabled on the key
    outbox = revoker(storage, url, clock)
    await outbox.revoke(["clientId:alice"], reason="disabled")
    assert await outbox.deliver() == 1
    assert await storage.outbox.pending() == 0
    await outbox.close()


@pytest.mark.anyio
async def test_250_targets_go_in_calls_of_at_most_100_with_every_configured_key(
    storage: Storage, ably: tuple[FakeAbly, str], clock: FakeClock
) -> None:
    """With key rotation, each configured key may have signed live tokens: each revokes (40133 otherwise)."""
    fake, url = ably
    outbox = revoker(storage, url, clock, keys=(KEY, OLD_KEY))
    await outbox.revoke([f"clientId:user{i}" for i in range(250)], reason="operator")
    assert await outbox.deliver() == 500
    sizes = sorted((key, len(body["targets"])) for key, _, body in fake.calls)
    assert sizes == sorted([(k.name, n) for k in (KEY, OLD_KEY) for n in (100, 100, 50)])
    assert all(key == user for key, user, _ in fake.calls)  # each call authenticated with its own key
    await outbox.close()


def test_rows_with_different_cutoffs_never_share_a_call() -> None:
    rows = [PendingRevocation("k", f"clientId:{i}", 1000 if i % 2 else 2000, False, "x", id=i) for i in range(4)]
    assert sorted((b.issued_before, b.targets) for b in batches(rows)) == [
        (1000, ["clientId:1", "clientId:3"]),
        (2000, ["clientId:0", "clientId:2"]),
    ]
    many = [PendingRevocation("k", f"clientId:{i}", 1, False, "x", id=i) for i in range(MAX_TARGETS_PER_CALL + 1)]
    assert [len(b.targets) for b in batches(many)] == [MAX_TARGETS_PER_CALL, 1]


def test_backoff_doubles_up_to_thirty_seconds() -> None:
    # A revoked connection never outlives an Ably outage by more than half a minute.
    assert [backoff(n) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert backoff(50) == 30.0


@pytest.mark.anyio
async def test_rows_claimed_by_a_deliverer_that_died_are_delivered_within_fifteen_seconds(
    storage: Storage, ably: tuple[FakeAbly, str], clock: FakeClock
) -> None:
    fake, url = ably
    outbox = revoker(storage, url, clock)
    await outbox.revoke(["clientId:alice"], reason="disabled")
    # Another process claimed the row, then was killed before its call to Ably returned.
    assert len(await storage.outbox.claim(now=clock(), limit=10, lease=CLAIM_LEASE_S)) == 1
    clock.advance(14.9)
    assert await outbox.deliver() == 0 and fake.calls == []  # its lease still holds
    clock.advance(0.1)
    assert await outbox.deliver() == 1
    assert [call[2]["targets"] for call in fake.calls] == [["clientId:alice"]]
    await outbox.close()


def test_a_call_to_ably_with_its_retry_ends_within_the_lease() -> None:
    # Two attempts (the host, one fallback) at the request timeout each: done before another deliverer
    # may claim the same rows, so a slow Ably is not sent every batch twice.
    api = AblyRestApi(None)
    assert 2 * api.timeout < CLAIM_LEASE_S <= 15.0


def test_outcomes_and_sandbox_options() -> None:
    assert [judge(s, None) for s in (200, 429, 500, 0, 400, 401)] == [
        "delivered",
        "retry",
        "retry",
        "retry",
        "refused",
        "refused",
    ]
    assert client_options(None) == {}
    assert client_options("http://127.0.0.1:8001") == {"endpoint": "127.0.0.1", "tls": False, "port": 8001}


@pytest.mark.anyio
async def test_a_role_change_revocation_waits_for_the_next_second(
    storage: Storage, ably: tuple[FakeAbly, str], clock: FakeClock
) -> None:
    """With allowReauthMargin the client renews at once: its new token must be minted after the second
    the cutoff covers, so the call goes out only then."""
    fake, url = ably
    clock.now = 1_800_000_000.25
    outbox = revoker(storage, url, clock)
    await outbox.revoke(["clientId:alice"], reason="role", reauth=True)
    assert await outbox.deliver() == 0 and fake.calls == []
    clock.advance(0.75)
    assert await outbox.deliver() == 1
    assert fake.calls[0][2]["allowReauthMargin"] is True
    await outbox.close()
    await asyncio.sleep(0)


# --- a change and its revocation: a token minted while the change is being stored is covered -------

ALICE = Identity(subject="alice", client_id="alice", role="user", source="account")


async def _change_while_a_renewal_is_answered(
    make_settings: SettingsFactory, passwords: Passwords, change: str, write_takes: float
) -> tuple[int, int, list[PendingRevocation]]:
    """Run ``change`` on alice while, during its database write (``write_takes`` seconds of the clock),
    a renewal of hers is answered from the state not yet changed; returns that token's ``iat`` in ms,
    the ``iat`` of her next token (logged straight back in) and the revocations stored."""
    clock = FakeClock(1_800_000_000.2)
    settings = make_settings(ABLY_REVOCABLE_TOKENS="true", TOKEN_IAT_MARGIN="5")
    services = build_services(settings, clock=clock, passwords=passwords)
    storage = services.storage
    await storage.open()
    try:
        await services.users.add("alice", "correct horse battery", role="user", client_id="alice", now=clock())
        minted: list[int] = []
        target = storage.users if change == "disable" else storage.sessions
        name = "set_disabled" if change == "disable" else "delete_subject"
        write = getattr(target, name)

        async def slow_write(*args: Any, **kwargs: Any) -> Any:
            clock.advance(write_takes)
            minted.append(services.issuer.jwt(ALICE, TokenParams()).issued_ms)
            return await write(*args, **kwargs)

        setattr(target, name, slow_write)
        if change == "disable":
            await services.users.set_disabled("alice", True)
        else:
            await services.sessions.end_all(ALICE)
        after = services.issuer.jwt(ALICE, TokenParams()).issued_ms  # the same second
        rows = await storage.outbox.claim(now=clock() + 10, limit=100, lease=60)
        return minted[0], after, [row for row in rows if row.target == "clientId:alice"]
    finally:
        await storage.close()


@pytest.mark.anyio
@pytest.mark.parametrize("write_takes", [0.001, 0.9])  # within the second, and into the next one
@pytest.mark.parametrize("change", ["disable", "everywhere"])
async def test_a_token_minted_while_the_change_is_being_stored_is_revoked_too(
    make_settings: SettingsFactory, fast_passwords: Passwords, change: str, write_takes: float
) -> None:
    """The cutoff is taken before the change is stored (the outbox row goes in its transaction); a
    renewal answered in between, from the state not yet changed, must not slip past it (nor be given
    the later ``iat`` meant for a user who logs straight back in after the change); a token minted
    once the change is visible is not revoked."""
    during, after, rows = await _change_while_a_renewal_is_answered(make_settings, fast_passwords, change, write_takes)
    assert rows
    assert any(during < row.issued_before for row in rows), (during, rows)
    assert all(after >= row.issued_before for row in rows), (after, rows)
