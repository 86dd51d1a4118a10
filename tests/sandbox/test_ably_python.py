"""The unmodified ably-python 3.x client against the sandbox, over JSON and msgpack."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from ably.types.message import Message
from ably.util.exceptions import AblyException

from .conftest import KEY, Stack, jwt_for
from .pyclient import eventually, patch_realtime_port, realtime, run, wait_for_state

FORMATS = pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])


@pytest.fixture(autouse=True)
def _realtime_port(monkeypatch: pytest.MonkeyPatch) -> None:
    patch_realtime_port(monkeypatch)


def connection_id(client: Any) -> str:
    value: str = client.connection.connection_manager.connection_id
    return value


def collect(into: list[Any]) -> Callable[[Any], None]:
    """A listener appending to ``into`` (ably-python accepts only real functions as listeners)."""

    def listener(item: Any) -> None:
        into.append(item)

    return listener


def suffix() -> str:
    return uuid.uuid4().hex[:8]


@FORMATS
def test_connect_attach_publish_subscribe_and_presence(stack: Stack, binary: bool) -> None:
    name = f"py-room-{suffix()}"

    async def scenario() -> None:
        async with (
            realtime(stack.sandbox.port, stack.auth_url, binary=binary, user="py-alice") as alice,
            realtime(stack.sandbox.port, stack.auth_url, binary=binary, user="py-bob") as bob,
        ):
            await wait_for_state(alice, "connected")
            await wait_for_state(bob, "connected")
            received: list[Any] = []
            bob_channel = bob.channels.get(name)
            await bob_channel.subscribe(collect(received))
            presence_events: list[Any] = []
            await bob_channel.presence.subscribe(collect(presence_events))
            alice_channel = alice.channels.get(name)
            await alice_channel.attach()
            await alice_channel.publish("text", "hello from python")
            await alice_channel.publish("bytes", b"\x00\x01\x02")
            await alice_channel.presence.enter({"mood": "curious"})
            await eventually(lambda: len(received) == 2 and len(presence_events) == 1, timeout=5, what="fan-out")
            assert [(m.name, bytes(m.data) if m.name == "bytes" else m.data) for m in received] == [
                ("text", "hello from python"),
                ("bytes", b"\x00\x01\x02"),
            ]
            assert {m.client_id for m in received} == {"py-alice"}
            assert {m.connection_id for m in received} == {connection_id(alice)}
            assert all(m.id and m.timestamp for m in received)
            members = await bob_channel.presence.get()
            assert [(m.client_id, m.data) for m in members] == [("py-alice", {"mood": "curious"})]

    run(scenario, timeout=20)


@FORMATS
def test_capability_denied_publish_is_nacked_40160(stack: Stack, binary: bool) -> None:
    name = f"py-readonly-{suffix()}"

    async def scenario() -> None:
        cap = f'{{"{name}":["subscribe"]}}'
        async with realtime(stack.sandbox.port, stack.auth_url, binary=binary, user="py-reader", cap=cap) as client:
            await wait_for_state(client, "connected")
            channel = client.channels.get(name)
            await channel.attach()
            with pytest.raises(AblyException) as caught:
                await channel.publish("nope", "not allowed")
            assert caught.value.code == 40160

    run(scenario, timeout=15)


#: A token a little over Ably's 30 s AUTH lead: AUTH comes 3 s after issue, so renewals are quick (RTN22).
IN_BAND_LIFETIME = "33"


def test_tokens_are_renewed_in_band_at_least_three_times(stack: Stack) -> None:
    """33 s tokens: AUTH 30 s ahead of expiry (3 s after issue), a new token on the same connection."""

    async def one(binary: bool) -> None:
        user = f"py-renew-{suffix()}"
        name = f"py-renew-room-{suffix()}"
        async with realtime(
            stack.sandbox.port, stack.auth_url, binary=binary, user=user, lifetime=IN_BAND_LIFETIME
        ) as client:
            await wait_for_state(client, "connected")
            first_connection = connection_id(client)
            updates: list[Any] = []
            client.connection.on("update", collect(updates))
            channel = client.channels.get(name)
            received: list[Any] = []
            await channel.subscribe(collect(received))
            await channel.presence.enter("staying")
            deadline = time.monotonic() + 30
            published = 0
            while len(updates) < 3:
                assert time.monotonic() < deadline, "fewer than three in-band renewals"
                await channel.publish("tick", f"tick-{published}")
                published += 1
                await asyncio.sleep(0.3)
                assert str(client.connection.state.value) == "connected"
            assert connection_id(client) == first_connection
            assert all(u.reason is None for u in updates)
            assert stack.token_app.calls_for(user) >= 4
            await channel.publish("tick", "after")
            await eventually(lambda: any(m.data == "after" for m in received), timeout=5, what="echo")
            members = await channel.presence.get()
            assert [m.client_id for m in members] == [user]

    async def scenario() -> None:
        await asyncio.gather(one(False), one(True))

    run(scenario, timeout=45)


def test_a_short_token_gets_no_auth_but_40142_at_expiry_and_the_client_resumes(stack: Stack) -> None:
    """Under 30 s there is no AUTH (as on Ably): DISCONNECTED 40142, ably-python renews and resumes."""

    async def scenario() -> None:
        user = f"py-expiry-{suffix()}"
        async with realtime(stack.sandbox.port, stack.auth_url, binary=True, user=user, lifetime="3") as client:
            await wait_for_state(client, "connected")
            first_connection = connection_id(client)
            changes: list[Any] = []
            client.connection.on("disconnected", collect(changes))
            updates: list[Any] = []
            client.connection.on("update", collect(updates))
            channel = client.channels.get(f"py-expiry-room-{suffix()}")
            received: list[Any] = []
            await channel.subscribe(collect(received))
            await eventually(lambda: bool(changes), timeout=6, what="DISCONNECTED at expiry")
            assert changes[0].reason.code == 40142
            assert updates == []  # no in-band renewal came first
            await wait_for_state(client, "connected", timeout=10)
            assert connection_id(client) == first_connection
            await channel.publish("after", "resumed")
            await eventually(lambda: len(received) == 1, timeout=5, what="echo after resume")

    run(scenario, timeout=25)


def test_a_rewound_channel_gets_its_backlog_once_across_a_reconnect(stack: Stack) -> None:
    """ably-python re-attaches after every CONNECTED with ATTACH_RESUME and its channel serial: the rewind
    backlog is not sent again, and what was published while it was away arrives once (issue 22)."""

    async def scenario() -> None:
        user, name = f"py-rewind-{suffix()}", f"py-rewind-room-{suffix()}"
        async with httpx.AsyncClient(auth=(KEY.name, KEY.secret), timeout=5) as http:
            for data in ("old-0", "old-1", "old-2"):
                response = await http.post(f"{stack.sandbox.http}/channels/{name}/messages", json={"data": data})
                response.raise_for_status()
            async with realtime(stack.sandbox.port, stack.auth_url, binary=True, user=user, lifetime="3") as client:
                await wait_for_state(client, "connected")
                changes: list[Any] = []
                client.connection.on("disconnected", collect(changes))
                channel = client.channels.get(name, params={"rewind": "2"})
                received: list[Any] = []
                await channel.subscribe(collect(received))
                await eventually(lambda: len(received) == 2, timeout=5, what="the rewind backlog")
                await eventually(lambda: bool(changes), timeout=6, what="DISCONNECTED at expiry")
                response = await http.post(f"{stack.sandbox.http}/channels/{name}/messages", json={"data": "away"})
                response.raise_for_status()
                await wait_for_state(client, "connected", timeout=10)
                await channel.publish("after", "after")
                await eventually(lambda: any(m.data == "after" for m in received), timeout=5, what="echo")
                await asyncio.sleep(0.3)
                assert [m.data for m in received] == ["old-1", "old-2", "away", "after"]

    run(scenario, timeout=25)


def test_ably_python_does_not_renew_on_the_second_40142(stack: Stack) -> None:
    """PINS A CLIENT BUG (ably-python 3.1.x, ably-spec 5.3): the second 40142-driven renewal never happens.

    ``ConnectionManager.on_token_error`` renews only when its stale ``__error_reason`` is not already a
    token error, so after the second expiry it reconnects with the dead token (DISCONNECTED 40142 again,
    then every 15 s). Real Ably sends no AUTH to tokens under 30 s, so ably-python clients with such
    tokens are cut off after their second expiry; this is why ``authserver check`` warns about short
    TOKEN_TTLs and why renewal tests use 33 s tokens. The sandbox does not hide it. When this test
    fails, ably-python has fixed the bug: drop this test and the warning's ably-python remark.
    """

    async def scenario() -> None:
        user = f"py-bug-{suffix()}"
        async with realtime(stack.sandbox.port, stack.auth_url, binary=True, user=user, lifetime="3") as client:
            await wait_for_state(client, "connected")
            expiries: list[Any] = []
            client.connection.on("disconnected", collect(expiries))
            await eventually(lambda: len(expiries) >= 1, timeout=6, what="first expiry")
            await wait_for_state(client, "connected", timeout=10)
            assert stack.token_app.calls_for(user) == 2  # the first 40142 was renewed
            await eventually(lambda: len(expiries) >= 3, timeout=8, what="second expiry and a stale reconnect")
            assert [e.reason.code for e in expiries[:3]] == [40142, 40142, 40142]
            assert stack.token_app.calls_for(user) == 2  # ... the second was not: the dead token again
            assert str(client.connection.state.value) != "connected"

    run(scenario, timeout=30)


def test_a_client_holding_only_a_token_fails_40171_at_expiry(stack: Stack) -> None:
    """No authUrl, authCallback or key: at 40142 the client cannot renew and goes FAILED 40171 (RSA4a;
    ably-python ``realtimeauth_test.py::test_renew_token_no_renew_means_provided``)."""

    async def scenario() -> None:
        from ably import AblyRealtime

        client = AblyRealtime(token=jwt_for(lifetime=3), endpoint="127.0.0.1", port=stack.sandbox.port, tls=False)
        try:
            await wait_for_state(client, "connected")
            await wait_for_state(client, "failed", timeout=8)
            assert client.connection.error_reason.code == 40171
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), timeout=5)

    run(scenario, timeout=20)


@FORMATS
def test_a_string_that_is_not_a_token_fails_the_client_40101(stack: Stack, binary: bool) -> None:
    """Ably answers ERROR 40101 to e.g. ``invalid-token`` and the client goes FAILED instead of renewing."""

    async def scenario() -> None:
        from ably import AblyRealtime, AblyRest

        client = AblyRealtime(
            token="invalid-token", endpoint="127.0.0.1", port=stack.sandbox.port, tls=False, use_binary_protocol=binary
        )
        try:
            await wait_for_state(client, "failed", timeout=8)
            assert client.connection.error_reason.code == 40101
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), timeout=5)
        rest = AblyRest(
            token="Sdnurv_some_invalid_token_nkds9r7",
            endpoint="127.0.0.1",
            port=stack.sandbox.port,
            tls=False,
            use_binary_protocol=binary,
        )
        try:
            with pytest.raises(AblyException) as caught:
                await rest.channels.get(f"py-nope-{suffix()}").history()
            assert (caught.value.status_code, caught.value.code) == (401, 40101)
        finally:
            await rest.close()

    run(scenario, timeout=20)


@FORMATS
def test_token_request_is_exchanged_through_request_token(stack: Stack, binary: bool) -> None:
    async def scenario() -> None:
        user = f"py-tr-{suffix()}"
        async with realtime(stack.sandbox.port, stack.auth_url, binary=binary, user=user, mode="request") as client:
            await wait_for_state(client, "connected")
            assert client.auth.client_id == user
            assert client.auth.token_details.token.startswith("sbxtok_")
            channel = client.channels.get(f"py-tr-room-{suffix()}")
            received: list[Any] = []
            await channel.subscribe(collect(received))
            await channel.publish("hello", "via TokenRequest")
            await eventually(lambda: len(received) == 1, timeout=5, what="echo")
            assert received[0].client_id == user

    run(scenario, timeout=15)


def test_revocation_disconnects_40141_and_the_client_comes_back_with_a_fresh_token(stack: Stack) -> None:
    async def scenario() -> None:
        user = f"py-revoke-{suffix()}"
        async with realtime(stack.sandbox.port, stack.auth_url, binary=True, user=user) as client:
            await wait_for_state(client, "connected")
            old_token = client.auth.token_details.token
            reasons: list[Any] = []
            client.connection.on("disconnected", collect(reasons))
            await asyncio.sleep(1.1)  # JWT iat is in whole seconds: revoke in a later second
            async with httpx.AsyncClient(auth=(KEY.name, KEY.secret)) as admin:
                response = await admin.post(
                    f"{stack.sandbox.http}/keys/{KEY.name}/revokeTokens", json={"targets": [f"clientId:{user}"]}
                )
            assert response.json()["successCount"] == 1
            await eventually(lambda: bool(reasons), timeout=5, what="DISCONNECTED 40141")
            assert reasons[0].reason.code == 40141
            await wait_for_state(client, "connected", timeout=10)
            assert client.auth.token_details.token != old_token

    run(scenario, timeout=20)


def test_a_revocation_with_reauth_margin_after_an_immediate_one_renews_in_band(stack: Stack) -> None:
    """Logout everywhere (immediate), then a role change (``allowReauthMargin``) for the same clientId:
    each call is its own rule (Ably revocation docs), so the second sends AUTH and the client renews on
    the same connection instead of being cut off with 40141."""

    async def scenario() -> None:
        user = f"py-revoke2-{suffix()}"
        async with realtime(stack.sandbox.port, stack.auth_url, binary=True, user=user) as client:
            await wait_for_state(client, "connected")
            reasons: list[Any] = []
            client.connection.on("disconnected", collect(reasons))
            await asyncio.sleep(1.1)  # JWT iat is in whole seconds: revoke in a later second
            assert await revoke(stack, user) == 1
            await eventually(lambda: bool(reasons), timeout=5, what="DISCONNECTED 40141")
            await wait_for_state(client, "connected", timeout=10)
            renewed, connection = client.auth.token_details.token, connection_id(client)
            updates: list[Any] = []
            client.connection.on("update", collect(updates))
            await asyncio.sleep(1.1)
            assert await revoke(stack, user, allowReauthMargin=True) == 1
            await eventually(lambda: bool(updates), timeout=5, what="the in-band renewal")
            assert client.auth.token_details.token != renewed
            assert [r.reason.code for r in reasons] == [40141]  # only the first revocation cut it
            assert (str(client.connection.state.value), connection_id(client)) == ("connected", connection)

    run(scenario, timeout=25)


async def revoke(stack: Stack, user: str, **options: Any) -> int:
    async with httpx.AsyncClient(auth=(KEY.name, KEY.secret)) as admin:
        response = await admin.post(
            f"{stack.sandbox.http}/keys/{KEY.name}/revokeTokens", json={"targets": [f"clientId:{user}"], **options}
        )
    count: int = response.json()["successCount"]
    return count


# -- behaviour the clients can tell apart from Ably's (each would fail on the sandbox before issue 7) --


def rest_client(stack: Stack, *, binary: bool, **options: Any) -> Any:
    from ably import AblyRest

    return AblyRest(endpoint="127.0.0.1", port=stack.sandbox.port, tls=False, use_binary_protocol=binary, **options)


@FORMATS
def test_a_capability_upgrade_by_authorize_lets_an_attached_channel_publish(stack: Stack, binary: bool) -> None:
    """Subscribe-only, then authorize() with subscribe+publish: publishing is ACKed, as on Ably (RTC8)."""
    name = f"py-upgrade-{suffix()}"

    async def scenario() -> None:
        user = f"py-up-{suffix()}"
        narrow = f'{{"{name}":["subscribe"]}}'
        wide = f'{{"{name}":["subscribe","publish"]}}'
        async with realtime(stack.sandbox.port, stack.auth_url, binary=binary, user=user, cap=narrow) as client:
            await wait_for_state(client, "connected")
            channel = client.channels.get(name)
            await channel.attach()
            with pytest.raises(AblyException) as refused:
                await channel.publish("early", "not yet")
            assert refused.value.code == 40160
            options = dict(client.auth.auth_options.auth_options)  # authorize() replaces them all
            options["auth_params"] = {"user": user, "cap": wide}
            await client.auth.authorize(auth_options=options)
            await channel.publish("later", "now allowed")

    run(scenario, timeout=20)


@FORMATS
def test_presence_get_right_after_enter_sees_the_member(stack: Stack, binary: bool) -> None:
    """The sender's PRESENCE echo arrives before its ACK, so the local set has the member when enter() returns."""

    async def scenario() -> None:
        user = f"py-echo-{suffix()}"
        async with realtime(stack.sandbox.port, stack.auth_url, binary=binary, user=user) as client:
            await wait_for_state(client, "connected")
            channel = client.channels.get(f"py-echo-room-{suffix()}")
            received: list[Any] = []
            await channel.subscribe(collect(received))
            await channel.presence.enter("here")
            members = await channel.presence.get()
            assert [m.client_id for m in members] == [user]
            await channel.publish("own", "echo first")
            assert [m.data for m in received] == ["echo first"]  # already delivered when publish() returns

    run(scenario, timeout=20)


@FORMATS
def test_a_client_supplied_message_id_published_three_times_arrives_once(stack: Stack, binary: bool) -> None:
    """Idempotent publishing (RSL1k): Ably de-duplicates on the message id."""
    from ably.types.message import Message

    async def scenario() -> None:
        name = f"py-idem-{suffix()}"
        async with (
            realtime(stack.sandbox.port, stack.auth_url, binary=binary, user="py-pub") as publisher,
            realtime(stack.sandbox.port, stack.auth_url, binary=binary, user="py-sub") as subscriber,
        ):
            await wait_for_state(publisher, "connected")
            await wait_for_state(subscriber, "connected")
            received: list[Any] = []
            await subscriber.channels.get(name).subscribe(collect(received))
            channel = publisher.channels.get(name)
            for attempt in range(3):
                await channel.publish(Message(name="order", data=f"attempt-{attempt}", id=f"order-{name}:0"))
            await channel.publish("after", "marker")
            await eventually(lambda: any(m.data == "marker" for m in received), timeout=5, what="marker")
            assert [m.data for m in received] == ["attempt-0", "marker"]

    run(scenario, timeout=20)


@FORMATS
def test_rest_history_pages_with_first_next_and_time_windows(stack: Stack, binary: bool) -> None:
    """RSL2: limit, direction, start/end; Link first and next (PaginatedResult.first()/next())."""
    name = f"py-history-{suffix()}"

    async def scenario() -> None:
        rest = rest_client(stack, binary=binary, token=jwt_for())
        try:
            channel = rest.channels.get(name)
            for i in range(3):
                await channel.publish("n", f"m{i}")
                await asyncio.sleep(0.01)  # distinct millisecond timestamps
            page = await channel.history(limit=2)
            assert [m.data for m in page.items] == ["m2", "m1"]
            assert page.has_next() and page.has_first()
            last = await page.next()
            assert [m.data for m in last.items] == ["m0"] and last.is_last()
            first = await last.first()
            assert [m.data for m in first.items] == ["m2", "m1"]
            middle = page.items[1].timestamp
            window = await channel.history(start=middle, end=middle)
            assert [m.data for m in window.items] == ["m1"]
            forwards = await channel.history(direction="forwards", start=middle)
            assert [m.data for m in forwards.items] == ["m1", "m2"]
        finally:
            await rest.close()

    run(scenario, timeout=20)


@FORMATS
def test_rest_stats_and_presence_history_answer_well_formed_pages(stack: Stack, binary: bool) -> None:
    """RSC6 stats (empty) and RSP4 presence history work with a token, as on Ably."""
    name = f"py-ph-{suffix()}"

    async def scenario() -> None:
        user = f"py-ph-{suffix()}"
        async with realtime(stack.sandbox.port, stack.auth_url, binary=binary, user=user) as client:
            await wait_for_state(client, "connected")
            channel = client.channels.get(name)
            await channel.presence.enter("in")
            await channel.presence.leave("out")
        rest = rest_client(stack, binary=binary, token=jwt_for(client_id="reader"))
        try:
            stats = await rest.stats(unit="hour")
            assert stats.items == []
            events = await rest.channels.get(name).presence.history()
            assert [(e.client_id, e.data) for e in events.items] == [(user, "out"), (user, "in")]
        finally:
            await rest.close()

    run(scenario, timeout=20)


@FORMATS
def test_user_claims_arrive_in_messages_and_presence_and_cannot_be_forged(stack: Stack, binary: bool) -> None:
    name = f"py-claims-{suffix()}"
    claims = json.dumps({"ably.channel.*": "anywhere", f"ably.channel.{name}": '{"mod":true}'})

    async def scenario() -> None:
        async with (
            realtime(stack.sandbox.port, stack.auth_url, binary=binary, user="py-mod", claims=claims) as moderator,
            realtime(stack.sandbox.port, stack.auth_url, binary=binary, user="py-watcher") as watcher,
        ):
            await wait_for_state(moderator, "connected")
            await wait_for_state(watcher, "connected")
            received: list[Any] = []
            presence_events: list[Any] = []
            watcher_channel = watcher.channels.get(name)
            await watcher_channel.subscribe(collect(received))
            await watcher_channel.presence.subscribe(collect(presence_events))
            channel = moderator.channels.get(name)
            await channel.publish("plain", "hello")
            await channel.publish(
                Message(name="forged", data="x", extras={"userClaim": "admin", "headers": {"a": "b"}})
            )
            await channel.presence.enter("here")
            await eventually(lambda: len(received) == 2 and len(presence_events) == 1, timeout=5, what="fan-out")
            assert [(m.name, m.extras) for m in received] == [
                ("plain", {"userClaim": '{"mod":true}'}),
                ("forged", {"userClaim": '{"mod":true}', "headers": {"a": "b"}}),
            ]
            assert presence_events[0].extras == {"userClaim": '{"mod":true}'}
            members = await watcher_channel.presence.get()
            assert [(m.client_id, m.extras) for m in members] == [("py-mod", {"userClaim": '{"mod":true}'})]

    run(scenario, timeout=20)


@FORMATS
def test_a_publish_flood_beyond_the_claimed_rate_gets_42911_and_the_connection_stays(
    stack: Stack, binary: bool
) -> None:
    name = f"py-flood-{suffix()}"
    claims = json.dumps({f"ably.limits.publish.perAttachment.maxRate.{name}": 2})

    async def scenario() -> None:
        async with realtime(
            stack.sandbox.port, stack.auth_url, binary=binary, user="py-flood", claims=claims
        ) as client:
            await wait_for_state(client, "connected")
            channel = client.channels.get(name)
            await channel.attach()
            outcomes = await asyncio.gather(
                *(channel.publish("m", f"message {i}") for i in range(8)), return_exceptions=True
            )
            refused = [o for o in outcomes if isinstance(o, AblyException)]
            assert len(outcomes) - len(refused) >= 2  # within the rate (and what refilled meanwhile)
            assert len(refused) >= 4
            assert {(e.code, e.status_code) for e in refused} == {(42911, 429)}
            assert str(client.connection.state.value) == "connected"
            assert str(channel.state.value) == "attached"
            await asyncio.sleep(1.1)
            await channel.publish("after", "a second later")  # the rate allows it again

    run(scenario, timeout=20)
