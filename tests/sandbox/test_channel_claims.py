"""JWT channel claims on the sandbox, on the wire: ``ably.channel.<resource>`` user claims become
``extras.userClaim`` on messages and presence (most specific resource wins, never forged), and
``ably.limits.publish.perAttachment.maxRate.<resource>`` NACKs publishes over the rate with 42911 while
the connection stays up. Time is the sandbox's (a fake clock here)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from authserver.sandbox import SandboxLimits

from .conftest import KEY, Stack, jwt_for, run_stack
from .wire import ACK, AUTH, CONNECTED, ERROR, HEARTBEAT, MESSAGE, NACK, PRESENCE, Wire
from helpers import FakeClock

RATE = "ably.limits.publish.perAttachment.maxRate."


def room() -> str:
    return f"claims:{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def fake_stack(clock: FakeClock) -> Iterator[Stack]:
    with run_stack(clock=clock) as stack:
        yield stack


def token(clock: FakeClock, client_id: str, claims: dict[str, Any]) -> str:
    return jwt_for(client_id=client_id, now=clock(), lifetime=600, extra=claims)


def publish(wire: Wire, channel: str, serial: int, **message: Any) -> dict[str, Any]:
    """Send one MESSAGE and return its ACK or NACK."""
    wire.send({"action": MESSAGE, "channel": channel, "msgSerial": serial, "messages": [{"data": "x", **message}]})
    return wire.next_matching(lambda f: f["action"] in (ACK, NACK) and f.get("msgSerial") == serial, "ACK/NACK")


def still_connected(wire: Wire) -> bool:
    wire.send({"action": HEARTBEAT, "id": "ping"})
    reply = wire.next_matching(lambda f: f["action"] in (ERROR,) or f.get("id") == "ping", "ping reply")
    return reply == {"action": HEARTBEAT, "id": "ping"}


def received(wire: Wire, channel: str, action: int = MESSAGE) -> list[dict[str, Any]]:
    frame = wire.expect(action, channel=channel)
    items: list[dict[str, Any]] = frame["messages" if action == MESSAGE else "presence"]
    return items


# --- publish rate ----------------------------------------------------------------------------------


def test_a_publish_flood_beyond_the_claimed_rate_is_nacked_42911_and_the_connection_stays(
    fake_stack: Stack, clock: FakeClock
) -> None:
    name = room()
    with Wire(fake_stack.sandbox.ws, access_token=token(clock, "flooder", {RATE + "claims:*": 2})) as wire:
        wire.connected()
        wire.attach(name)
        answers = [publish(wire, name, serial) for serial in range(6)]
        assert [a["action"] for a in answers] == [ACK, ACK, NACK, NACK, NACK, NACK]  # a burst of one second's worth
        error = answers[2]["error"]
        assert (error["code"], error["statusCode"]) == (42911, 429)
        assert error["message"].startswith(
            "Rate limit exceeded; request rejected (nonfatal); metric = channel.publish.perAttachment.maxRate;"
        )
        assert still_connected(wire)


def test_the_rate_refills_with_the_sandbox_clock(fake_stack: Stack, clock: FakeClock) -> None:
    name = room()
    with Wire(fake_stack.sandbox.ws, access_token=token(clock, "steady", {RATE + "*": 0.1})) as wire:
        wire.connected()
        wire.attach(name)
        assert [publish(wire, name, s)["action"] for s in range(2)] == [ACK, NACK]  # 0.1/s: one, then wait 10 s
        clock.advance(9)
        assert publish(wire, name, 2)["action"] == NACK
        clock.advance(1)
        assert publish(wire, name, 3)["action"] == ACK


def test_each_channel_has_its_own_bucket_and_unlimited_channels_are_untouched(
    fake_stack: Stack, clock: FakeClock
) -> None:
    first, second, free = room(), room(), f"free:{uuid.uuid4().hex[:8]}"
    with Wire(fake_stack.sandbox.ws, access_token=token(clock, "many", {RATE + "claims:*": 1})) as wire:
        wire.connected()
        assert [publish(wire, first, s)["action"] for s in range(2)] == [ACK, NACK]
        assert publish(wire, second, 2)["action"] == ACK
        assert [publish(wire, free, s)["action"] for s in range(3, 13)] == [ACK] * 10


def test_the_most_specific_rate_wins(fake_stack: Stack, clock: FakeClock) -> None:
    name = room()
    claims = {RATE + "*": 100, RATE + "claims:*": 50, RATE + name: 1}
    with Wire(fake_stack.sandbox.ws, access_token=token(clock, "specific", claims)) as wire:
        wire.connected()
        assert [publish(wire, name, s)["action"] for s in range(2)] == [ACK, NACK]


def publish_batch(wire: Wire, channel: str, serial: int, count: int) -> dict[str, Any]:
    """Send one MESSAGE carrying ``count`` messages and return its ACK or NACK."""
    batch = [{"data": i} for i in range(count)]
    wire.send({"action": MESSAGE, "channel": channel, "msgSerial": serial, "messages": batch})
    return wire.next_matching(lambda f: f["action"] in (ACK, NACK) and f.get("msgSerial") == serial, "ACK/NACK")


def test_a_batch_counts_every_message_and_is_refused_whole_when_the_bucket_cannot_hold_it(
    fake_stack: Stack, clock: FakeClock
) -> None:
    """At 2/s a batch of 3 is over the rate however long the client waited (one burst holds one second's
    worth), so a 1000-message batch cannot slip through on one token; a batch of 2 takes the whole burst."""
    name = room()
    with Wire(fake_stack.sandbox.ws, access_token=token(clock, "batcher", {RATE + "*": 2})) as wire:
        wire.connected()
        refused = publish_batch(wire, name, 0, 3)
        assert (refused["action"], refused["error"]["code"], refused["error"]["statusCode"]) == (NACK, 42911, 429)
        assert publish_batch(wire, name, 1, 2)["action"] == ACK
        assert publish(wire, name, 2)["action"] == NACK
        clock.advance(0.5)
        assert publish(wire, name, 3)["action"] == ACK
        assert still_connected(wire)


def test_an_auth_replaces_the_rate_and_claims(fake_stack: Stack, clock: FakeClock) -> None:
    name = room()
    first = token(clock, "renewer", {RATE + "*": 1, "ably.channel.*": "old"})
    with (
        Wire(fake_stack.sandbox.ws, access_token=first) as wire,
        Wire(fake_stack.sandbox.ws, key=f"{KEY.name}:{KEY.secret}") as watcher,
    ):
        wire.connected()
        watcher.connected()
        watcher.attach(name)
        assert [publish(wire, name, s)["action"] for s in range(2)] == [ACK, NACK]
        assert received(watcher, name)[0]["extras"] == {"userClaim": "old"}
        renewed = token(clock, "renewer", {RATE + "*": 100, "ably.channel.*": "new"})
        wire.send({"action": AUTH, "auth": {"accessToken": renewed}})
        wire.expect(CONNECTED)
        clock.advance(1)
        assert publish(wire, name, 2)["action"] == ACK
        assert received(watcher, name)[0]["extras"] == {"userClaim": "new"}
        clock.advance(0.01)  # one message's worth at the new rate (the old one would need a second)
        assert publish(wire, name, 3)["action"] == ACK


def test_switching_between_tokens_of_different_rates_does_not_refill_the_bucket(
    fake_stack: Stack, clock: FakeClock
) -> None:
    """A client holding two tokens with different rates (say before and after a role change) cannot refill a
    spent bucket by AUTHing with the other one: the bucket keeps what is left and refills at the new rate."""
    name = room()
    one, two = (token(clock, "switcher", {RATE + "*": rate}) for rate in (1, 2))
    with Wire(fake_stack.sandbox.ws, access_token=one) as wire:
        wire.connected()
        assert [publish(wire, name, s)["action"] for s in range(2)] == [ACK, NACK]
        for serial, renewed in enumerate((two, one, two), start=2):
            wire.send({"action": AUTH, "auth": {"accessToken": renewed}})
            wire.expect(CONNECTED)
            assert publish(wire, name, serial)["action"] == NACK
        clock.advance(0.5)  # at 2/s: one message
        assert [publish(wire, name, s)["action"] for s in (5, 6)] == [ACK, NACK]


# --- user claims ---------------------------------------------------------------------------------


def test_the_user_claim_is_stamped_on_messages_and_the_most_specific_resource_wins(
    fake_stack: Stack, clock: FakeClock
) -> None:
    exact, other = room(), room()
    claims = {"ably.channel.*": "anywhere", "ably.channel.claims:*": "namespace", f"ably.channel.{exact}": "exact"}
    with (
        Wire(fake_stack.sandbox.ws, access_token=token(clock, "stamped", claims)) as sender,
        Wire(fake_stack.sandbox.ws, key=f"{KEY.name}:{KEY.secret}") as watcher,
    ):
        sender.connected()
        watcher.connected()
        for name in (exact, other, "elsewhere"):
            watcher.attach(name)
        for serial, name in enumerate((exact, other, "elsewhere")):
            assert publish(sender, name, serial)["action"] == ACK
        assert received(watcher, exact)[0]["extras"] == {"userClaim": "exact"}
        assert received(watcher, other)[0]["extras"] == {"userClaim": "namespace"}
        assert received(watcher, "elsewhere")[0]["extras"] == {"userClaim": "anywhere"}


def test_a_forged_user_claim_is_overwritten_and_other_extras_kept(fake_stack: Stack, clock: FakeClock) -> None:
    name = room()
    with (
        Wire(fake_stack.sandbox.ws, access_token=token(clock, "honest", {"ably.channel.*": "trusted"})) as sender,
        Wire(fake_stack.sandbox.ws, access_token=token(clock, "forger", {})) as forger,
        Wire(fake_stack.sandbox.ws, key=f"{KEY.name}:{KEY.secret}") as watcher,
    ):
        for wire in (sender, forger, watcher):
            wire.connected()
        watcher.attach(name)
        publish(sender, name, 0, extras={"userClaim": "forged", "headers": {"k": "v"}})
        assert received(watcher, name)[0]["extras"] == {"userClaim": "trusted", "headers": {"k": "v"}}
        publish(forger, name, 0, extras={"userClaim": "forged"})
        assert "extras" not in received(watcher, name)[0]  # no claim in the token: none on the message


def test_presence_messages_carry_the_user_claim(fake_stack: Stack, clock: FakeClock) -> None:
    name = room()
    with (
        Wire(fake_stack.sandbox.ws, access_token=token(clock, "member", {"ably.channel.*": '{"mod":true}'})) as member,
        Wire(fake_stack.sandbox.ws, key=f"{KEY.name}:{KEY.secret}") as watcher,
    ):
        member.connected()
        watcher.connected()
        watcher.attach(name)
        member.send(
            {
                "action": PRESENCE,
                "channel": name,
                "msgSerial": 0,
                "presence": [{"action": 2, "data": "hi", "extras": {"userClaim": "forged"}}],
            }
        )
        [enter] = received(watcher, name, PRESENCE)
        assert (enter["clientId"], enter["extras"]) == ("member", {"userClaim": '{"mod":true}'})


def test_a_rest_publish_with_the_token_is_stamped_but_not_rate_limited(fake_stack: Stack, clock: FakeClock) -> None:
    """REST has no attachment: the per-attachment rate is for realtime publishes only."""
    name = room()
    bearer = token(clock, "rest-user", {"ably.channel.*": "via-rest", RATE + "*": 0.1})
    with Wire(fake_stack.sandbox.ws, key=f"{KEY.name}:{KEY.secret}") as watcher:
        watcher.connected()
        watcher.attach(name)
        for _ in range(3):
            response = httpx.post(
                f"{fake_stack.sandbox.http}/channels/{name}/messages",
                json={"data": "x", "extras": {"userClaim": "forged"}},
                headers={"Authorization": f"Bearer {bearer}"},
                timeout=5,
            )
            assert response.status_code == 201, response.text
            assert received(watcher, name)[0]["extras"] == {"userClaim": "via-rest"}


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"ably.channel.*": 5}, "ably.channel.* must be a string"),
        ({RATE + "*": 0}, "must be a positive number"),
        ({RATE + "*": "5"}, "must be a positive number"),
        ({RATE + "*": True}, "must be a positive number"),
        ({"ably.channel.": "x"}, "does not name a usable channel resource"),
    ],
)
def test_a_jwt_with_malformed_channel_claims_is_refused_40144(
    fake_stack: Stack, clock: FakeClock, claims: dict[str, Any], why: str
) -> None:
    with Wire(fake_stack.sandbox.ws, access_token=token(clock, "bad", claims)) as wire:
        refused = wire.recv()
    assert (refused["action"], refused["error"]["code"]) == (ERROR, 40144)
    assert why in refused["error"]["message"]


@contextmanager
def two_buckets_spent(client_id: str) -> Iterator[tuple[Wire, FakeClock, str, str]]:
    """A connection allowed 2 buckets that has just published once (at 1/s) to two channels; yields it,
    its clock, the first of those channels and a third one."""
    clock = FakeClock()
    with run_stack(SandboxLimits(max_channels_per_connection=2), clock=clock) as small:
        with Wire(small.sandbox.ws, access_token=token(clock, client_id, {RATE + "*": 1})) as wire:
            wire.connected()
            a, b, c = room(), room(), room()
            assert [publish(wire, name, s)["action"] for s, name in enumerate((a, b))] == [ACK, ACK]
            yield wire, clock, a, c
            assert still_connected(wire)


def test_rate_buckets_stay_bounded_per_connection_and_refilled_ones_go_first() -> None:
    """At most ``max_channels_per_connection`` buckets: full (refilled) ones are forgotten to make room,
    which changes nothing."""
    with two_buckets_spent("spread") as (wire, clock, _, c):
        clock.advance(1)  # a and b refill: forgetting them is harmless
        assert publish(wire, c, 2)["action"] == ACK
        assert publish(wire, c, 3)["action"] == NACK  # c's bucket was kept


def test_a_spent_bucket_is_never_forgotten_so_publishing_elsewhere_cannot_refill_a_channel() -> None:
    """With every bucket still refilling, a publish on one more rate-limited channel is refused (42911)
    rather than forgetting a spent bucket: otherwise publishing to enough other channels would refill a
    flooded one for free."""
    with two_buckets_spent("cycler") as (wire, clock, a, c):
        refused = publish(wire, c, 2)
        assert (refused["action"], refused["error"]["code"]) == (NACK, 42911)
        assert "rate-limited channels" in refused["error"]["message"]
        assert publish(wire, a, 3)["action"] == NACK  # a's bucket is still spent
        clock.advance(1)
        assert publish(wire, c, 4)["action"] == ACK


def test_a_claimed_rate_above_1e9_is_no_limit_not_a_bad_token(fake_stack: Stack, clock: FakeClock) -> None:
    """Nobody publishes a billion messages a second: the sandbox takes such a rate for no limit instead of
    refusing a token Ably would accept (the policy refuses to issue one)."""
    name = room()
    with Wire(fake_stack.sandbox.ws, access_token=token(clock, "fast", {RATE + "*": 10**12})) as wire:
        wire.connected()
        assert [publish(wire, name, s)["action"] for s in range(5)] == [ACK] * 5


@pytest.mark.parametrize("wire_format", ["json", "msgpack"])
def test_a_user_claim_that_is_not_valid_unicode_is_refused_40144(
    fake_stack: Stack, clock: FakeClock, wire_format: str
) -> None:
    """A JWT can carry a lone surrogate (``"\\ud800"`` is valid JSON); stamped on a message it could not be
    sent to a msgpack subscriber or kept in history, so the token is refused as client payloads are."""
    claims = {"ably.channel.*": "bad \ud800 text"}
    with Wire(fake_stack.sandbox.ws, wire_format=wire_format, access_token=token(clock, "surrogate", claims)) as wire:
        refused = wire.recv()
    assert (refused["action"], refused["error"]["code"]) == (ERROR, 40144)
    assert "ably.channel.* must be a string of valid Unicode" in refused["error"]["message"]
