"""The realtime protocol on the wire, checked with a raw WebSocket client (spec 6, checklist 6.9)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import msgpack
import pytest
from websockets.exceptions import ConnectionClosed

from authserver.sandbox import SandboxLimits, create_sandbox_app

from .conftest import KEY, UNKNOWN_APP_KEY, Stack, jwt_for, run_stack, serve
from .wire import (
    ACK,
    ATTACH,
    ATTACHED,
    AUTH,
    CLOSE,
    CLOSED,
    CONNECTED,
    DETACH,
    DETACHED,
    DISCONNECTED,
    ERROR,
    HEARTBEAT,
    MESSAGE,
    NACK,
    PRESENCE,
    SYNC,
    Wire,
    deaf_client,
)
from helpers import FakeClock

SUBSCRIBE_MODES = (1 << 18) | (1 << 19)
ANNOTATION_PUBLISH = 1 << 21
#: presence, publish, subscribe, presence_subscribe and (Ably's newer default) annotation_publish
DEFAULT_MODES = (1 << 16) | (1 << 17) | SUBSCRIBE_MODES | ANNOTATION_PUBLISH
HAS_PRESENCE, HAS_BACKLOG, RESUMED, ATTACH_RESUME = 1, 2, 4, 32


def room() -> str:
    return f"room:{uuid.uuid4().hex[:8]}"


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture(scope="module")
def quick() -> Iterator[Stack]:
    """A sandbox with fast clocks: heartbeats every 0.4 s, members gone 0.3 s after a drop, tiny limits."""
    limits = SandboxLimits(
        max_idle_interval_ms=400,
        presence_grace_ms=300,
        max_message_size=2048,
        max_channels=50,
        max_channels_per_connection=3,
    )
    with run_stack(limits) as running:
        yield running


class TestConnect:
    def test_connected_carries_full_connection_details(self, stack: Stack) -> None:
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="alice")) as wire:
            frame = wire.connected()
        details = frame["connectionDetails"]
        assert frame["connectionKey"] == details["connectionKey"]
        assert frame["connectionKey"].startswith(frame["connectionId"] + "!")
        assert details["clientId"] == "alice"
        assert details["maxIdleInterval"] == 15000
        assert details["connectionStateTtl"] == 120000
        assert details["maxMessageSize"] == 65536
        assert "error" not in frame

    def test_python_spelling_of_the_token_parameter_and_any_path(self, stack: Stack) -> None:
        with Wire(stack.sandbox.ws + "/any/path", accessToken=jwt_for(), v="5") as wire:
            assert "clientId" not in wire.connected()["connectionDetails"]

    def test_msgpack_is_answered_in_binary_frames(self, stack: Stack) -> None:
        with Wire(stack.sandbox.ws, wire_format="msgpack", access_token=jwt_for()) as wire:
            wire.connected()
            assert isinstance(wire.raw_frames[-1], bytes)

    def test_basic_auth_with_the_key_on_the_url(self, stack: Stack) -> None:
        with Wire(stack.sandbox.ws, key=f"{KEY.name}:{KEY.secret}", clientId="keyed") as wire:
            assert wire.connected()["connectionDetails"]["clientId"] == "keyed"

    @pytest.mark.parametrize(
        ("params", "code"),
        [
            # Built inside the test (a lambda), never at collection: a token made then could expire
            # before the test runs when earlier tests are slow.
            (lambda: {"access_token": jwt_for(now=time.time() - 120, lifetime=60)}, 40142),
            (lambda: {"access_token": jwt_for(client_id="alice"), "clientId": "bob"}, 40102),
            (lambda: {"access_token": "garbage"}, 40101),
            (lambda: {"access_token": "Sdnurv_some_invalid_token_nkds9r7"}, 40101),
            (lambda: {"key": f"{KEY.name}:wrong"}, 40101),
            (dict, 40101),
            (lambda: {"access_token": jwt_for(key=UNKNOWN_APP_KEY)}, 40400),
        ],
        ids=[
            "expired token",
            "clientId mismatch",
            "not a token",
            "made-up Ably token",
            "wrong key",
            "no credentials",
            "JWT of an app that does not exist",
        ],
    )
    def test_refused_connections_get_error_and_close(
        self, stack: Stack, params: Callable[[], dict[str, str]], code: int
    ) -> None:
        with Wire(stack.sandbox.ws, **params()) as wire:
            frame = wire.recv()
            assert frame["action"] == ERROR
            assert frame["error"]["code"] == code
            assert "channel" not in frame

    def test_ping_is_echoed_with_its_id(self, stack: Stack) -> None:
        with Wire(stack.sandbox.ws, access_token=jwt_for()) as wire:
            wire.connected()
            wire.send({"action": HEARTBEAT, "id": "ping-1"})
            assert wire.expect(HEARTBEAT) == {"action": HEARTBEAT, "id": "ping-1"}

    def test_heartbeats_keep_an_idle_connection_alive(self, quick: Stack) -> None:
        with Wire(quick.sandbox.ws, access_token=jwt_for()) as wire:
            wire.connected()
            assert wire.expect(HEARTBEAT, timeout=3.0) == {"action": HEARTBEAT}

    def test_close_is_answered_with_closed(self, stack: Stack) -> None:
        with Wire(stack.sandbox.ws, access_token=jwt_for()) as wire:
            connection_id = wire.connected()["connectionId"]
            wire.send({"action": CLOSE})
            assert wire.expect(CLOSED) == {"action": CLOSED, "connectionId": connection_id}


class TestChannels:
    def test_attach_grants_the_modes_the_capability_allows(self, stack: Stack) -> None:
        name = room()
        with Wire(stack.sandbox.ws, access_token=jwt_for(capability=f'{{"{name}":["subscribe"]}}')) as wire:
            wire.connected()
            attached = wire.attach(name)
        assert attached["action"] == ATTACHED
        assert attached["flags"] == SUBSCRIBE_MODES
        assert "channelSerial" in attached

    def test_attach_to_a_channel_outside_the_capability_gets_channel_error_40160(self, stack: Stack) -> None:
        with Wire(stack.sandbox.ws, access_token=jwt_for(capability='{"allowed":["*"]}')) as wire:
            wire.connected()
            frame = wire.attach("forbidden")
        assert frame["action"] == ERROR
        assert frame["error"]["code"] == 40160
        assert frame["error"]["statusCode"] == 401

    def test_repeated_attach_is_answered_again_and_marked_resumed(self, stack: Stack) -> None:
        name = room()
        with Wire(stack.sandbox.ws, access_token=jwt_for()) as wire:
            wire.connected()
            assert wire.attach(name)["flags"] == DEFAULT_MODES
            again = wire.attach(name, flags=32, channelSerial="whatever")
        assert again["flags"] == DEFAULT_MODES | RESUMED

    def test_requested_modes_are_narrowed(self, stack: Stack) -> None:
        with Wire(stack.sandbox.ws, access_token=jwt_for()) as wire:
            wire.connected()
            assert wire.attach(room(), params={"modes": "subscribe"})["flags"] == 1 << 18

    def test_params_modes_wins_over_mode_flags(self, stack: Stack) -> None:
        """ably-js channel.test.js attachWithChannelParamsModesAndChannelModes: flags ignored if params.modes."""
        with Wire(stack.sandbox.ws, access_token=jwt_for()) as wire:
            wire.connected()
            attached = wire.attach(room(), params={"modes": "presence,subscribe"}, flags=(1 << 17) | (1 << 19))
        assert attached["flags"] == (1 << 16) | (1 << 18)

    def test_only_params_ably_recognises_are_echoed(self, stack: Stack) -> None:
        """ably-js channel.test.js attachWithInvalidChannelParams: an unknown param ends up dropped."""
        with Wire(stack.sandbox.ws, access_token=jwt_for()) as wire:
            wire.connected()
            attached = wire.attach(room(), params={"delta": "vcdiff", "nonexistent": "foo"})
            bare = wire.attach(room(), params={"nonexistent": "foo"})
        assert attached["params"] == {"delta": "vcdiff"}
        assert "params" not in bare

    @pytest.mark.parametrize("name", [":hell", "::", "a::b", "room:"])
    def test_channel_names_with_empty_segments_are_refused_40010(self, stack: Stack, name: str) -> None:
        """ably-js channel.test.js channelattachinvalid: ATTACH to ':hell' fails the channel with 40010."""
        with Wire(stack.sandbox.ws, access_token=jwt_for()) as wire:
            wire.connected()
            frame = wire.attach(name)
            wire.send({"action": MESSAGE, "channel": name, "msgSerial": 0, "messages": [{"data": "x"}]})
            nack = wire.expect(NACK)
        assert (frame["action"], frame["error"]["code"]) == (ERROR, 40010)
        assert nack["error"]["code"] == 40010

    def test_detach_is_answered_with_detached(self, stack: Stack) -> None:
        name = room()
        with Wire(stack.sandbox.ws, access_token=jwt_for()) as wire:
            wire.connected()
            wire.attach(name)
            wire.send({"action": DETACH, "channel": name})
            assert wire.expect(DETACHED) == {"action": DETACHED, "channel": name}


class TestPublish:
    def test_ack_carries_msg_serial_zero_and_count_then_the_message_fans_out(self, stack: Stack) -> None:
        name = room()
        with (
            Wire(stack.sandbox.ws, access_token=jwt_for(client_id="alice")) as alice,
            Wire(stack.sandbox.ws, wire_format="msgpack", access_token=jwt_for(client_id="bob")) as bob,
        ):
            alice_id = alice.connected()["connectionId"]
            bob.connected()
            alice.attach(name)
            bob.attach(name)
            alice.send(
                {
                    "action": MESSAGE,
                    "channel": name,
                    "msgSerial": 0,
                    "messages": [{"name": "ev", "data": "hi", "size": 2, "action": 0}],
                }
            )
            ack = alice.expect(ACK)
            delivered = bob.expect(MESSAGE)
        assert (ack["msgSerial"], ack["count"]) == (0, 1)
        assert len(ack["res"][0]["serials"]) == 1
        message = delivered["messages"][0]
        assert message == {
            "name": "ev",
            "data": "hi",
            "clientId": "alice",
            "connectionId": alice_id,
            "id": f"{alice_id}:0:0",
            "timestamp": message["timestamp"],
        }
        assert delivered["channel"] == name

    def test_publish_without_capability_is_nacked_40160(self, stack: Stack) -> None:
        name = room()
        with Wire(stack.sandbox.ws, access_token=jwt_for(capability=f'{{"{name}":["subscribe"]}}')) as wire:
            wire.connected()
            wire.attach(name)
            wire.send({"action": MESSAGE, "channel": name, "msgSerial": 0, "messages": [{"data": "x"}]})
            nack = wire.expect(NACK)
        assert (nack["msgSerial"], nack["count"], nack["error"]["code"]) == (0, 1, 40160)

    def test_a_mode_not_requested_at_attach_is_nacked_40160(self, stack: Stack) -> None:
        """ably-js channel.test.js checkCantPublish / checkCantEnterPresence expect 40160."""
        name = room()
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="m")) as wire:
            wire.connected()
            wire.attach(name, params={"modes": "subscribe"})
            wire.send({"action": MESSAGE, "channel": name, "msgSerial": 0, "messages": [{"data": "x"}]})
            wire.send({"action": PRESENCE, "channel": name, "msgSerial": 1, "presence": [{"action": 2}]})
            nacks = [wire.expect(NACK)["error"]["code"] for _ in range(2)]
        assert nacks == [40160, 40160]

    def test_the_senders_echo_arrives_before_its_ack(self, stack: Stack) -> None:
        """As on Ably (ably-spec 8.5): MESSAGE and PRESENCE echo first, then ACK."""
        name = room()
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="echoer")) as wire:
            wire.connected()
            wire.attach(name)
            wire.send({"action": MESSAGE, "channel": name, "msgSerial": 0, "messages": [{"data": "x"}]})
            first = wire.expect_any({MESSAGE, ACK})
            wire.expect(ACK)
            wire.send({"action": PRESENCE, "channel": name, "msgSerial": 1, "presence": [{"action": 2}]})
            presence_first = wire.expect_any({PRESENCE, ACK})
        assert (first["action"], presence_first["action"]) == (MESSAGE, PRESENCE)

    def test_a_client_supplied_id_published_three_times_is_delivered_once(self, stack: Stack) -> None:
        """Idempotent publishing (RSL1k, RTL6a1): every publish is ACKed, the message arrives once."""
        name = room()
        with (
            Wire(stack.sandbox.ws, access_token=jwt_for()) as publisher,
            Wire(stack.sandbox.ws, access_token=jwt_for()) as subscriber,
        ):
            publisher.connected()
            subscriber.connected()
            subscriber.attach(name)
            for serial in range(3):
                message = {"id": "client-chosen:0", "data": f"try-{serial}"}
                publisher.send({"action": MESSAGE, "channel": name, "msgSerial": serial, "messages": [message]})
                assert publisher.expect(ACK)["msgSerial"] == serial
            publisher.send({"action": MESSAGE, "channel": name, "msgSerial": 3, "messages": [{"data": "next"}]})
            delivered = [subscriber.expect(MESSAGE)["messages"][0]["data"] for _ in range(2)]
        assert delivered == ["try-0", "next"]

    def test_publish_with_someone_elses_client_id_is_nacked_40012(self, stack: Stack) -> None:
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="alice")) as wire:
            wire.connected()
            wire.send({"action": MESSAGE, "channel": room(), "msgSerial": 0, "messages": [{"clientId": "eve"}]})
            assert wire.expect(NACK)["error"]["code"] == 40012

    def test_wildcard_token_keeps_the_message_client_id(self, stack: Stack) -> None:
        name = room()
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="*")) as wire:
            assert wire.connected()["connectionDetails"]["clientId"] == "*"
            wire.attach(name)
            wire.send({"action": MESSAGE, "channel": name, "msgSerial": 0, "messages": [{"clientId": "x", "data": 1}]})
            assert wire.expect(MESSAGE)["messages"][0]["clientId"] == "x"

    def test_oversized_message_is_nacked_40009(self, quick: Stack) -> None:
        with Wire(quick.sandbox.ws, access_token=jwt_for()) as wire:
            wire.connected()
            wire.send({"action": MESSAGE, "channel": room(), "msgSerial": 0, "messages": [{"data": "x" * 3000}]})
            nack = wire.expect(NACK)
        assert (nack["error"]["code"], nack["error"]["statusCode"]) == (40009, 413)

    def test_echo_false_suppresses_own_messages(self, stack: Stack) -> None:
        name = room()
        with Wire(stack.sandbox.ws, access_token=jwt_for(), echo="false") as wire:
            wire.connected()
            wire.attach(name)
            wire.send({"action": MESSAGE, "channel": name, "msgSerial": 0, "messages": [{"data": "a"}]})
            wire.expect(ACK)
            wire.send({"action": HEARTBEAT, "id": "after"})
            frame = wire.expect_any({MESSAGE, HEARTBEAT})
        assert frame == {"action": HEARTBEAT, "id": "after"}

    def test_binary_data_is_transcoded_between_msgpack_and_json(self, stack: Stack) -> None:
        name = room()
        with (
            Wire(stack.sandbox.ws, wire_format="msgpack", access_token=jwt_for()) as packer,
            Wire(stack.sandbox.ws, access_token=jwt_for()) as reader,
        ):
            packer.connected()
            reader.connected()
            reader.attach(name)
            packer.send({"action": MESSAGE, "channel": name, "msgSerial": 0, "messages": [{"data": b"\x01\x02"}]})
            message = reader.expect(MESSAGE)["messages"][0]
        assert (message["data"], message["encoding"]) == ("AQI=", "base64")


class TestPresence:
    def test_enter_sync_on_attach_and_leave_on_close(self, stack: Stack) -> None:
        name = room()
        with (
            Wire(stack.sandbox.ws, access_token=jwt_for(client_id="alice")) as alice,
            Wire(stack.sandbox.ws, wire_format="msgpack", access_token=jwt_for(client_id="bob")) as bob,
        ):
            alice_id = alice.connected()["connectionId"]
            bob.connected()
            alice.attach(name)
            alice.send({"action": PRESENCE, "channel": name, "msgSerial": 0, "presence": [{"action": 2, "data": "hi"}]})
            entered = alice.expect(PRESENCE)["presence"][0]  # the echo comes before the ACK
            assert alice.expect(ACK)["msgSerial"] == 0
            assert (entered["action"], entered["clientId"], entered["id"]) == (2, "alice", f"{alice_id}:0:0")

            attached = bob.attach(name)
            assert attached["flags"] & HAS_PRESENCE
            sync = bob.expect(SYNC)
            assert sync["channelSerial"].endswith(":")
            assert [(m["action"], m["clientId"], m["data"]) for m in sync["presence"]] == [(1, "alice", "hi")]

            alice.send({"action": CLOSE})
            alice.expect(CLOSED)
            leave = bob.expect(PRESENCE)["presence"][0]
        assert (leave["action"], leave["clientId"], leave["connectionId"]) == (3, "alice", alice_id)
        assert not leave["id"].startswith(alice_id)  # synthesised: clients compare timestamps

    def test_reentering_with_the_same_data_is_acked_but_not_broadcast(self, stack: Stack) -> None:
        name = room()
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="alice")) as alice:
            alice.connected()
            alice.attach(name)
            for serial in (0, 1):
                alice.send(
                    {"action": PRESENCE, "channel": name, "msgSerial": serial, "presence": [{"action": 2, "data": "x"}]}
                )
            alice.send({"action": PRESENCE, "channel": name, "msgSerial": 2, "presence": [{"action": 2, "data": "y"}]})
            events = [alice.expect_any({PRESENCE})["presence"][0]["action"] for _ in range(2)]
        assert events == [2, 4]

    def test_members_of_a_dropped_connection_leave_after_the_grace_period(self, quick: Stack) -> None:
        name = room()
        with Wire(quick.sandbox.ws, access_token=jwt_for(client_id="watcher")) as watcher:
            watcher.connected()
            watcher.attach(name)
            with Wire(quick.sandbox.ws, access_token=jwt_for(client_id="dropper")) as dropper:
                dropper.connected()
                dropper.send({"action": PRESENCE, "channel": name, "msgSerial": 0, "presence": [{"action": 2}]})
                dropper.expect(ACK)
            assert watcher.expect(PRESENCE)["presence"][0]["action"] == 2
            assert watcher.expect(PRESENCE, timeout=3)["presence"][0]["action"] == 3

    def test_presence_history_holds_enter_update_and_leave(self, stack: Stack) -> None:
        """RSP4: GET /channels/{ch}/presence/history, newest first, paged like message history."""
        name = room()
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="alice")) as alice:
            alice.connected()
            for serial, (action, data) in enumerate([(2, "in"), (4, "busy"), (3, "out")]):
                alice.send(
                    {
                        "action": PRESENCE,
                        "channel": name,
                        "msgSerial": serial,
                        "presence": [{"action": action, "data": data}],
                    }
                )
                alice.expect(ACK)
        url, auth = f"{stack.sandbox.http}/channels/{name}/presence/history", (KEY.name, KEY.secret)
        events = httpx.get(url, auth=auth, timeout=5).json()
        forwards = httpx.get(url, params={"direction": "forwards", "limit": 2}, auth=auth, timeout=5)
        assert [(e["action"], e["clientId"], e["data"]) for e in events] == [
            (3, "alice", "out"),
            (4, "alice", "busy"),
            (2, "alice", "in"),
        ]
        assert [e["data"] for e in forwards.json()] == ["in", "busy"]
        assert 'rel="next"' in forwards.headers["link"]

    def test_rest_presence_lists_the_members_entered_over_realtime(self, stack: Stack) -> None:
        name = room()
        mood = {"data": '{"mood":"happy"}', "encoding": "json"}  # how SDKs send object data over JSON
        with (
            Wire(stack.sandbox.ws, access_token=jwt_for(client_id="alice")) as alice,
            Wire(stack.sandbox.ws, wire_format="msgpack", access_token=jwt_for(client_id="bob")) as bob,
        ):
            alice_id = alice.connected()["connectionId"]
            bob_id = bob.connected()["connectionId"]
            alice.send({"action": PRESENCE, "channel": name, "msgSerial": 0, "presence": [{"action": 2, **mood}]})
            bob.send({"action": PRESENCE, "channel": name, "msgSerial": 0, "presence": [{"action": 2, "data": "hi"}]})
            alice.expect(ACK)
            bob.expect(ACK)
            url, auth = f"{stack.sandbox.http}/channels/{name}/presence", (KEY.name, KEY.secret)
            members = httpx.get(url, auth=auth, timeout=5).json()
            only_bob = httpx.get(url, params={"clientId": "bob"}, auth=auth, timeout=5).json()
        listed = sorted((m["clientId"], m["connectionId"], m["action"], m["data"], m.get("encoding")) for m in members)
        assert listed == [("alice", alice_id, 1, '{"mood":"happy"}', "json"), ("bob", bob_id, 1, "hi", None)]
        assert [(m["clientId"], m["data"]) for m in only_bob] == [("bob", "hi")]

    def test_enter_without_a_client_id_is_nacked_40012(self, stack: Stack) -> None:
        with Wire(stack.sandbox.ws, access_token=jwt_for()) as wire:
            wire.connected()
            wire.send({"action": PRESENCE, "channel": room(), "msgSerial": 0, "presence": [{"action": 2}]})
            assert wire.expect(NACK)["error"]["code"] == 40012


class TestResume:
    def test_resume_keeps_the_connection_and_replays_missed_messages(self, stack: Stack) -> None:
        name = room()
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="r")) as first:
            connected = first.connected()
            first.attach(name)
        with Wire(stack.sandbox.ws, access_token=jwt_for()) as publisher:
            publisher.connected()
            publisher.send({"action": MESSAGE, "channel": name, "msgSerial": 0, "messages": [{"data": "missed"}]})
            publisher.expect(ACK)
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="r"), resume=connected["connectionKey"]) as second:
            again = second.connected()
            assert again["connectionId"] == connected["connectionId"]
            assert "error" not in again
            attached = second.attach(name, flags=32)
            assert attached["flags"] & RESUMED
            assert second.expect(MESSAGE)["messages"][0]["data"] == "missed"

    def test_unknown_connection_key_gets_a_new_connection_and_80008(self, stack: Stack) -> None:
        with Wire(stack.sandbox.ws, access_token=jwt_for(), resume="0123456789!feedfacecafe") as wire:
            frame = wire.connected()
        assert frame["error"]["code"] == 80008
        assert not frame["connectionId"].startswith("0123456789")

    def test_resume_with_a_token_for_someone_else_is_refused_40102(self, stack: Stack) -> None:
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="owner")) as first:
            key = first.connected()["connectionKey"]
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="thief"), resume=key) as second:
            assert second.recv()["error"]["code"] == 40102


class TestTokenLifecycle:
    def test_auth_arrives_30_s_before_expiry_and_reauth_keeps_the_connection(self, stack: Stack) -> None:
        """RTN22: Ably sends AUTH about 30 s before expiry; a 33 s token is prompted 3 s after issue."""
        issued_at, lifetime = int(time.time()), 33
        expires_at = issued_at + lifetime
        token = jwt_for(client_id="renewer", lifetime=lifetime, now=issued_at)
        with Wire(stack.sandbox.ws, access_token=token) as wire:
            connection_id = wire.connected()["connectionId"]
            assert wire.expect(AUTH, timeout=lifetime - 25) == {"action": AUTH}
            assert time.time() >= expires_at - 30 - 0.1  # not earlier than Ably's 30 s lead
            wire.send({"action": AUTH, "auth": {"accessToken": jwt_for(client_id="renewer", lifetime=60)}})
            again = wire.connected()
            assert again["connectionId"] == connection_id

    def test_a_token_shorter_than_the_lead_gets_no_auth_only_40142_at_expiry(self, stack: Stack) -> None:
        """Ably prompts no token that lives under 30 s (ably-js ``auth_token_expires``): it just expires."""
        issued_at, lifetime = int(time.time()), 3
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="short", lifetime=lifetime, now=issued_at)) as wire:
            wire.connected()
            frame = wire.expect_any({AUTH, DISCONNECTED}, timeout=lifetime + 5)
        assert (frame["action"], frame["error"]["code"]) == (DISCONNECTED, 40142)

    def test_the_short_token_prompt_is_an_opt_in_deviation(self) -> None:
        with run_stack(SandboxLimits(short_token_prompts=True)) as fast:
            issued_at, lifetime = int(time.time()), 4
            with Wire(fast.sandbox.ws, access_token=jwt_for(lifetime=lifetime, now=issued_at)) as wire:
                wire.connected()
                assert wire.expect_any({AUTH, DISCONNECTED}, timeout=lifetime + 2) == {"action": AUTH}
                assert time.time() < issued_at + lifetime - 1

    def test_a_capability_upgrade_by_auth_widens_the_attach_modes(self, stack: Stack) -> None:
        """Subscribe-only, then AUTH with publish too: the attached channel may now publish (ably-spec 8.5)."""
        name = room()
        with Wire(
            stack.sandbox.ws, access_token=jwt_for(client_id="up", capability=f'{{"{name}":["subscribe"]}}')
        ) as wire:
            wire.connected()
            assert wire.attach(name)["flags"] == SUBSCRIBE_MODES
            upgraded = jwt_for(client_id="up", capability=f'{{"{name}":["subscribe","publish"]}}')
            wire.send({"action": AUTH, "auth": {"accessToken": upgraded}})
            wire.connected()
            wire.send({"action": MESSAGE, "channel": name, "msgSerial": 0, "messages": [{"data": "now allowed"}]})
            assert wire.expect_any({ACK, NACK})["action"] == ACK

    def test_reauth_with_another_client_id_is_refused_40102(self, stack: Stack) -> None:
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="alice")) as wire:
            wire.connected()
            wire.send({"action": AUTH, "auth": {"accessToken": jwt_for(client_id="mallory")}})
            frame = wire.expect(ERROR)
        assert frame["error"]["code"] == 40102

    def test_reauth_with_a_narrower_capability_fails_channels_no_longer_allowed(self, stack: Stack) -> None:
        kept, lost = room(), room()
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="c")) as wire:
            wire.connected()
            wire.attach(kept)
            wire.attach(lost)
            narrower = jwt_for(client_id="c", capability=f'{{"{kept}":["subscribe"]}}')
            wire.send({"action": AUTH, "auth": {"accessToken": narrower}})
            error = wire.expect(ERROR)
            assert (error["channel"], error["error"]["code"]) == (lost, 40160)
            wire.connected()
            wire.send({"action": MESSAGE, "channel": kept, "msgSerial": 0, "messages": [{"data": "x"}]})
            assert wire.expect(NACK)["error"]["code"] == 40160

    def test_expiry_without_renewal_disconnects_40142_and_keeps_state_for_resume(self, stack: Stack) -> None:
        issued_at, lifetime = int(time.time()), 4
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="late", lifetime=lifetime, now=issued_at)) as wire:
            key = wire.connected()["connectionKey"]
            frame = wire.expect(DISCONNECTED, timeout=lifetime + 5)
            assert time.time() >= issued_at + lifetime - 0.1  # at expiry, not before
        assert frame["error"] == {
            "message": "Key/token status changed (token expired)",
            "code": 40142,
            "statusCode": 401,
            "href": "https://help.ably.io/error/40142",
        }
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="late"), resume=key) as again:
            assert again.connected()["connectionKey"].split("!")[0] == key.split("!")[0]

    def test_revocation_disconnects_live_connections_40141(self, stack: Stack) -> None:
        user = f"revoked-{uuid.uuid4().hex[:6]}"
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id=user, now=time.time() - 2)) as wire:
            wire.connected()
            response = httpx.post(
                f"{stack.sandbox.http}/keys/{KEY.name}/revokeTokens",
                json={"targets": [f"clientId:{user}"]},
                auth=(KEY.name, KEY.secret),
                timeout=5,
            )
            assert response.status_code == 200
            frame = wire.expect(DISCONNECTED)
        assert frame["error"]["code"] == 40141

    def test_a_later_margin_revocation_is_enforced_on_the_token_renewed_for_an_earlier_one(self) -> None:
        """Each revokeTokens call is a rule with its own appliesAt (Ably revocation docs): the token the
        client renewed to after the first rule's AUTH is cut off when the second rule applies."""
        with run_stack(SandboxLimits(reauth_margin_ms=600)) as fast:
            user = f"twice-{uuid.uuid4().hex[:6]}"

            def revoke(**body: Any) -> None:
                response = httpx.post(
                    f"{fast.sandbox.http}/keys/{KEY.name}/revokeTokens",
                    json={"targets": [f"clientId:{user}"], "allowReauthMargin": True, **body},
                    auth=(KEY.name, KEY.secret),
                    timeout=5,
                )
                assert response.json()["successCount"] == 1

            with Wire(fast.sandbox.ws, access_token=jwt_for(client_id=user, now=time.time() - 10)) as wire:
                wire.connected()
                revoke(issuedBefore=int(time.time() * 1000) - 5000)  # covers the first token only
                wire.expect(AUTH)
                wire.send({"action": AUTH, "auth": {"accessToken": jwt_for(client_id=user, now=time.time() - 2)}})
                wire.connected()
                revoke()  # covers the renewed token too, from a little later on
                wire.expect(AUTH)
                assert wire.expect(DISCONNECTED)["error"]["code"] == 40141

    def test_revoking_a_revocation_key_cuts_off_its_tokens_40141_and_no_others(self) -> None:
        clock = FakeClock()
        with run_stack(clock=clock) as revocable:

            def token(user: str, revocation_key: str) -> str:
                """A token from the token app, as an SDK would get it (``rkey`` authParam)."""
                response = httpx.get(revocable.auth_url, params={"user": user, "rkey": revocation_key}, timeout=5)
                response.raise_for_status()
                token: str = response.json()["token"]
                return token

            live, other_group = token("ann", "group-a"), token("cal", "group-b")
            kept_for_later = token("bea", "group-a")  # issued before the revocation, presented after it
            with (
                Wire(revocable.sandbox.ws, access_token=live) as ann,
                Wire(revocable.sandbox.ws, access_token=other_group) as cal,
            ):
                ann.connected()
                cal.connected()
                clock.advance(2)  # a JWT's iat has whole seconds: revoke in a later second than the tokens
                response = httpx.post(
                    f"{revocable.sandbox.http}/keys/{KEY.name}/revokeTokens",
                    json={"targets": ["revocationKey:group-a"]},
                    auth=(KEY.name, KEY.secret),
                    timeout=5,
                )
                assert (response.json()["successCount"], response.json()["failureCount"]) == (1, 0)
                assert ann.expect(DISCONNECTED)["error"]["code"] == 40141
                cal.send({"action": HEARTBEAT, "id": "still-here"})
                still = cal.next_matching(lambda f: f["action"] == DISCONNECTED or "id" in f, "ping reply")
                assert still == {"action": HEARTBEAT, "id": "still-here"}
            with Wire(revocable.sandbox.ws, access_token=kept_for_later) as bea:
                refused = bea.recv()
            assert (refused["action"], refused["error"]["code"]) == (ERROR, 40141)
            with Wire(revocable.sandbox.ws, access_token=token("bea", "group-a")) as reissued:
                assert reissued.connected()["connectionDetails"]["clientId"] == "bea"


class TestLimits:
    def test_connection_limit_is_a_clear_error(self) -> None:
        with (
            run_stack(SandboxLimits(max_connections=1)) as small,
            Wire(small.sandbox.ws, access_token=jwt_for()) as one,
        ):
            one.connected()
            with Wire(small.sandbox.ws, access_token=jwt_for()) as two:
                frame = two.recv()
        assert frame["action"] == ERROR
        assert frame["error"]["code"] == 40150
        assert "maximum of 1 connections" in frame["error"]["message"]

    def test_oversized_frame_fails_the_connection_40009(self, quick: Stack) -> None:
        with Wire(quick.sandbox.ws, wire_format="msgpack", access_token=jwt_for()) as wire:
            wire.connected()
            wire.ws.send(msgpack.packb({"action": MESSAGE, "padding": b"x" * 600_000}))
            frame = wire.expect(ERROR)
        assert frame["error"]["code"] == 40009


def test_connected_frame_is_first(stack: Stack) -> None:
    with Wire(stack.sandbox.ws, access_token=jwt_for()) as wire:
        assert wire.recv()["action"] == CONNECTED


POISON: list[tuple[str, dict[str, Any]]] = [
    ("msgpack", {"data": msgpack.ExtType(1, b"x")}),
    ("msgpack", {"data": msgpack.Timestamp(1, 0)}),
    ("msgpack", {"data": "x", "extras": {"h": b"\x00"}}),
    ("msgpack", {"data": {b"k": 1}}),
    ("msgpack", {"data": [b"nested bytes"]}),
    ("json", {"data": float("nan")}),
    ("json", {"data": float("inf")}),
    ("json", {"data": 2**70}),
    ("json", {"data": "lone \ud800 surrogate"}),
    ("json", {"name": "\udfff"}),
    ("json", {"data": nested(100)}),
]


class TestHostileInput:
    """Nothing one client sends can crash its session silently or cut off other clients."""

    def test_a_jwt_whose_claims_are_not_ascii_is_refused_40144(self, stack: Stack) -> None:
        header = jwt_for().split(".")[0]
        with Wire(stack.sandbox.ws, access_token=f"{header}.é.abc") as wire:
            frame = wire.recv()
        assert (frame["action"], frame["error"]["code"]) == (ERROR, 40144)

    def test_a_frame_nested_too_deep_to_decode_fails_the_connection_40000(self, stack: Stack) -> None:
        with Wire(stack.sandbox.ws, access_token=jwt_for()) as wire:
            wire.connected()
            wire.ws.send('{"action":0,"id":' + "[" * 100_000 + "]" * 100_000 + "}")
            assert wire.expect(ERROR)["error"]["code"] == 40000

    def test_payloads_not_relayable_in_both_formats_are_nacked_and_harm_no_subscriber(self, stack: Stack) -> None:
        name = room()
        with (
            Wire(stack.sandbox.ws, access_token=jwt_for()) as json_sub,
            Wire(stack.sandbox.ws, wire_format="msgpack", access_token=jwt_for()) as msgpack_sub,
            Wire(stack.sandbox.ws, access_token=jwt_for()) as json_pub,
            Wire(stack.sandbox.ws, wire_format="msgpack", access_token=jwt_for()) as msgpack_pub,
        ):
            for wire in (json_sub, msgpack_sub, json_pub, msgpack_pub):
                wire.connected()
            json_sub.attach(name)
            msgpack_sub.attach(name)
            publishers = {"json": json_pub, "msgpack": msgpack_pub}
            for serial, (wire_format, message) in enumerate(POISON):
                publishers[wire_format].send(
                    {"action": MESSAGE, "channel": name, "msgSerial": serial, "messages": [message]}
                )
                nack = publishers[wire_format].expect_any({ACK, NACK})
                assert (nack["action"], nack["error"]["code"]) == (NACK, 40000), (wire_format, repr(message))
            json_pub.send({"action": MESSAGE, "channel": name, "msgSerial": 99, "messages": [{"data": "fine"}]})
            assert json_sub.expect(MESSAGE)["messages"][0]["data"] == "fine"
            assert msgpack_sub.expect(MESSAGE)["messages"][0]["data"] == "fine"
        history = httpx.get(f"{stack.sandbox.http}/channels/{name}/messages", auth=(KEY.name, KEY.secret), timeout=5)
        assert [m["data"] for m in history.json()] == ["fine"]

    def test_a_publish_of_too_many_messages_is_nacked_40009_at_once(self, stack: Stack) -> None:
        with Wire(stack.sandbox.ws, wire_format="msgpack", access_token=jwt_for()) as wire:
            wire.connected()
            started = time.monotonic()
            wire.send({"action": MESSAGE, "channel": room(), "msgSerial": 0, "messages": [{}] * 400_000})
            nack = wire.expect(NACK, timeout=10)
        assert (nack["error"]["code"], nack["error"]["statusCode"]) == (40009, 413)
        assert time.monotonic() - started < 5  # generous: it takes about 0.1 s, not one step per message

    def test_detach_without_a_usable_channel_name_gets_error_40010(self, stack: Stack) -> None:
        with Wire(stack.sandbox.ws, access_token=jwt_for()) as wire:
            wire.connected()
            wire.send({"action": DETACH, "channel": 7})
            frame = wire.expect(ERROR)
        assert frame["error"]["code"] == 40010
        assert "channel" not in frame

    def test_attaching_beyond_max_channels_per_connection_is_a_channel_error_42910(self, quick: Stack) -> None:
        with Wire(quick.sandbox.ws, access_token=jwt_for()) as wire:
            wire.connected()
            for _ in range(3):
                assert wire.attach(room())["action"] == ATTACHED
            frame = wire.attach(name := room())
        assert (frame["action"], frame["channel"], frame["error"]["code"]) == (ERROR, name, 42910)


class FailingClock:
    """A clock that fails once armed: the stand-in for a bug anywhere in the sandbox."""

    def __init__(self) -> None:
        self.armed = False

    def __call__(self) -> float:
        if self.armed:
            raise RuntimeError("clock failure with made-up detail")
        return time.time()


@pytest.mark.parametrize("when", ["at connect", "on a frame"])
def test_an_unexpected_failure_is_logged_by_type_and_answered_with_error_50000(
    when: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FailingClock()
    with serve(create_sandbox_app([KEY], clock=clock)) as served, caplog.at_level("INFO", "authserver.sandbox"):
        clock.armed = when == "at connect"
        with Wire(served.ws, key=f"{KEY.name}:{KEY.secret}") as wire:
            if when == "on a frame":
                wire.connected()
                clock.armed = True
                wire.send({"action": MESSAGE, "channel": "c", "msgSerial": 0, "messages": [{"data": "x"}]})
            frame = wire.expect(ERROR)
            with pytest.raises(ConnectionClosed):
                wire.recv(timeout=2)
    assert (frame["error"]["code"], frame["error"]["statusCode"]) == (50000, 500)
    assert "unexpected RuntimeError at" in caplog.text
    assert "made-up detail" not in caplog.text


def test_a_client_that_stops_reading_is_dropped_and_frees_its_connection_slot() -> None:
    limits = SandboxLimits(max_connections=2, max_outbound_queue=20, max_idle_interval_ms=1000)
    with serve(create_sandbox_app([KEY], limits=limits)) as served:
        query = {"key": f"{KEY.name}:{KEY.secret}"}
        deaf = deaf_client(served.host, served.port, query, [{"action": ATTACH, "channel": "flood"}])
        try:
            with Wire(served.ws, **query) as publisher:
                publisher.connected()
                serial = 0
                deadline = time.monotonic() + 20
                # Flood the channel (a round at a time, so however soon the deaf client's ATTACH is
                # handled, later rounds reach it) until a newcomer gets the slot the deaf client held.
                while True:
                    for _ in range(50):
                        big = [{"data": "x" * 60_000}]
                        publisher.send({"action": MESSAGE, "channel": "flood", "msgSerial": serial, "messages": big})
                        publisher.expect(ACK)
                        serial += 1
                    with Wire(served.ws, **query) as newcomer:
                        if newcomer.recv()["action"] == CONNECTED:
                            break
                    assert time.monotonic() < deadline, "the deaf client still holds its connection slot"
        finally:
            deaf.close()


class TestRecoveryAndReplay:
    def test_rewind_replays_recent_history_after_attached(self, stack: Stack) -> None:
        """The ``rewind`` channel param: the last N messages (or a duration's worth) after ATTACHED."""
        name = room()
        with Wire(stack.sandbox.ws, access_token=jwt_for()) as wire:
            wire.connected()
            for serial in range(3):
                wire.send({"action": MESSAGE, "channel": name, "msgSerial": serial, "messages": [{"data": serial}]})
                wire.expect(ACK)
        with (
            Wire(stack.sandbox.ws, access_token=jwt_for()) as late,
            Wire(stack.sandbox.ws, access_token=jwt_for()) as timed,
        ):
            late.connected()
            timed.connected()
            assert late.attach(name, params={"rewind": "2"})["params"] == {"rewind": "2"}
            replayed = [late.expect(MESSAGE)["messages"][0]["data"] for _ in range(2)]
            timed.attach(name, params={"rewind": "1m"})
            all_of_the_last_minute = [timed.expect(MESSAGE)["messages"][0]["data"] for _ in range(3)]
            bad = late.attach(room(), params={"rewind": "forever"})
        assert replayed == [1, 2]
        assert all_of_the_last_minute == [0, 1, 2]
        assert (bad["action"], bad["error"]["code"]) == (ERROR, 40000)

    def test_a_client_requested_sync_sends_the_members_again(self, stack: Stack) -> None:
        name = room()
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="alice")) as alice:
            alice.connected()
            alice.attach(name)
            alice.send({"action": PRESENCE, "channel": name, "msgSerial": 0, "presence": [{"action": 2, "data": "hi"}]})
            alice.expect(ACK)
            alice.send({"action": SYNC, "channel": name})
            sync = alice.expect(SYNC)
            alice.send({"action": SYNC, "channel": room()})
            refused = alice.expect(ERROR)
        assert [(m["clientId"], m["action"]) for m in sync["presence"]] == [("alice", 1)]
        assert refused["error"]["code"] == 90001

    def test_remain_present_for_shortens_how_long_a_dropped_member_stays(self, stack: Stack) -> None:
        """``remainPresentFor`` (ms) on the connection: the default 15 s grace is 0.2 s here."""
        name = room()
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="watcher")) as watcher:
            watcher.connected()
            watcher.attach(name)
            with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="brief"), remainPresentFor="200") as brief:
                brief.connected()
                brief.send({"action": PRESENCE, "channel": name, "msgSerial": 0, "presence": [{"action": 2}]})
                brief.expect(ACK)
            assert watcher.expect(PRESENCE)["presence"][0]["action"] == 2
            assert watcher.expect(PRESENCE, timeout=5)["presence"][0]["action"] == 3

    def test_recover_takes_over_the_connection_or_says_80018(self, stack: Stack) -> None:
        """RTN16: ``recover`` with a live connection's key continues it; an unknown key gets 80018."""
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="r")) as first:
            frame = first.connected()
            with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="r"), recover=frame["connectionKey"]) as second:
                recovered = second.connected()
        with Wire(stack.sandbox.ws, access_token=jwt_for(), recover="0123456789!feedfacecafe") as third:
            fresh = third.connected()
        assert recovered["connectionId"] == frame["connectionId"] and "error" not in recovered
        assert fresh["error"]["code"] == 80018 and fresh["connectionId"] != "0123456789"


def _publish(wire: Wire, name: str, values: list[Any], *, first_serial: int = 0) -> list[str]:
    """Publish ``values`` one by one; the channel serials of the echoes (which come before each ACK)."""
    echoed: list[str] = []
    for offset, value in enumerate(values):
        wire.send(
            {"action": MESSAGE, "channel": name, "msgSerial": first_serial + offset, "messages": [{"data": value}]}
        )
        while (frame := wire.expect_any({ACK, MESSAGE}))["action"] == MESSAGE:
            if frame.get("channel") == name:
                echoed.append(frame["channelSerial"])
    return echoed


def _data(wire: Wire, count: int, channel: str | None = None) -> list[Any]:
    return [wire.expect(MESSAGE, channel=channel)["messages"][0]["data"] for _ in range(count)]


class TestContinuity:
    """Rewind, channel serials and recover (issue 22): where an attach starts from.

    Ably docs: channels/options/rewind ("only has an effect on an initial channel attachment"),
    connect/states#recover; ably-js: ``RealtimeChannel.attachImpl`` sends ``channelSerial`` (RTL4c1),
    ``createRecoveryKey``/``recoverChannels`` carry every channel's serial, HAS_BACKLOG becomes
    ``ChannelStateChange.hasBacklog``.
    """

    def test_a_rewind_backlog_is_flagged_has_backlog_and_an_empty_one_is_not(self, stack: Stack) -> None:
        name = room()
        with Wire(stack.sandbox.ws, access_token=jwt_for()) as wire:
            wire.connected()
            empty = wire.attach(room(), params={"rewind": "1"})
            _publish(wire, name, ["a", "b"])
        with Wire(stack.sandbox.ws, access_token=jwt_for()) as late:
            late.connected()
            attached = late.attach(name, params={"rewind": 1})  # a JSON number, as ably-js's own suite sends it
            backlog = _data(late, 1)
        assert empty["flags"] & HAS_BACKLOG == 0
        assert attached["flags"] & (HAS_BACKLOG | RESUMED) == HAS_BACKLOG
        assert attached["params"] == {"rewind": "1"}
        assert backlog == ["b"]

    @pytest.mark.parametrize("how", ["attach-resume-flag", "channel-serial"])
    def test_an_attach_that_resumes_gets_no_rewind_backlog(self, stack: Stack, how: str) -> None:
        """ably-js resume_rewind_1 (RTL4j): ATTACH_RESUME, or a channel serial, means not an initial attach."""
        name = room()
        with Wire(stack.sandbox.ws, access_token=jwt_for()) as wire:
            wire.connected()
            wire.attach(name)
            newest = _publish(wire, name, ["old", "newest"])[-1]
            resuming = {"flags": ATTACH_RESUME} if how == "attach-resume-flag" else {"channelSerial": newest}
            with Wire(stack.sandbox.ws, access_token=jwt_for()) as other:
                other.connected()
                attached = other.attach(name, params={"rewind": "5"}, **resuming)
                _publish(wire, name, ["live"], first_serial=2)
                first = other.expect(MESSAGE)["messages"][0]["data"]
        assert attached["flags"] & HAS_BACKLOG == 0
        assert first == "live"

    def test_an_attach_with_a_channel_serial_gets_what_followed_it_marked_resumed(self, stack: Stack) -> None:
        """The channel serial a client sends on ATTACH (RTL4c1) is where its attachment starts, on any connection."""
        name = room()
        with Wire(stack.sandbox.ws, access_token=jwt_for()) as wire:
            wire.connected()
            wire.attach(name)
            serials = _publish(wire, name, ["m0", "m1", "m2"])
        with Wire(stack.sandbox.ws, access_token=jwt_for()) as other:
            other.connected()
            attached = other.attach(name, channelSerial=serials[0])
            after = _data(other, 2)
            unknown = other.attach(room(), channelSerial=serials[0])
        assert attached["flags"] & (RESUMED | HAS_BACKLOG) == RESUMED | HAS_BACKLOG
        assert after == ["m1", "m2"]
        assert unknown["flags"] & (RESUMED | HAS_BACKLOG) == 0  # another channel's serial: no continuity

    def test_a_re_attach_on_the_same_transport_never_repeats_what_it_already_carried(self, stack: Stack) -> None:
        """A client re-attaches with the serial it last processed (ably-python after every CONNECTED, e.g.
        after an in-band renewal), while later messages may already be on their way on that same socket:
        they arrive, in order, so the re-attach replays nothing (`authserver smoke` once saw ping-6 twice)."""
        name = room()
        with Wire(stack.sandbox.ws, access_token=jwt_for()) as wire:
            wire.connected()
            wire.attach(name)
            serials = _publish(wire, name, ["ping-5", "ping-6"], first_serial=0)
            attached = wire.attach(name, channelSerial=serials[0])  # sent before ping-6 was processed
            after = _publish(wire, name, ["ping-7"], first_serial=2)  # every MESSAGE of the channel until the ACK
        assert attached["flags"] & (RESUMED | HAS_BACKLOG) == RESUMED
        assert len(after) == 1 and after[0] not in serials  # ping-7 alone: ping-6 is not sent again

    def test_what_a_channel_serial_missed_is_kept_for_the_connection_state_ttl_only(self) -> None:
        """Ably keeps a client's continuity for two minutes (docs: connect/states, connection state recovery):
        a message older than that is not replayed, and the attach is not RESUMED."""
        clock, name = FakeClock(), room()
        key = {"key": f"{KEY.name}:{KEY.secret}"}
        with run_stack(clock=clock) as clocked:
            with Wire(clocked.sandbox.ws, **key) as wire:
                wire.connected()
                wire.attach(name)
                serial = _publish(wire, name, ["seen"])[0]
                clock.advance(1)
                _publish(wire, name, ["too old by then"], first_serial=1)
                clock.advance(121)
                _publish(wire, name, ["recent"], first_serial=2)
            with Wire(clocked.sandbox.ws, **key) as other:
                other.connected()
                attached = other.attach(name, channelSerial=serial)
                replay = _data(other, 1)
        assert attached["flags"] & (RESUMED | HAS_BACKLOG) == HAS_BACKLOG
        assert replay == ["recent"]

    def test_recover_reattaches_several_channels_each_from_its_own_serial(self, stack: Stack) -> None:
        """RTN16: the recovered connection's channels continue from the serials in the recovery key, even
        when the old transport had been sent more (or less) before it went."""
        names = [room(), room()]
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="rec")) as old:
            key = old.connected()["connectionKey"]
            for name in names:
                old.attach(name)
            with Wire(stack.sandbox.ws, access_token=jwt_for()) as publisher:
                publisher.connected()
                for index, name in enumerate(names):
                    _publish(publisher, name, ["a", "b", "c"], first_serial=3 * index)
                received = {
                    name: [old.expect(MESSAGE, channel=name)["channelSerial"] for _ in range(3)] for name in names
                }
        # the old client had processed "a" on the first channel and "b" on the second when it took the key
        key_serials = {names[0]: received[names[0]][0], names[1]: received[names[1]][1]}
        with Wire(stack.sandbox.ws, access_token=jwt_for(client_id="rec"), recover=key) as new:
            recovered = new.connected()
            with Wire(stack.sandbox.ws, access_token=jwt_for()) as publisher:
                publisher.connected()
                for index, name in enumerate(names):
                    _publish(publisher, name, ["d"], first_serial=index)
            attached = [new.attach(names[0], channelSerial=key_serials[names[0]])]
            first = _data(new, 3, names[0])
            attached.append(new.attach(names[1], channelSerial=key_serials[names[1]]))
            second = _data(new, 2, names[1])
            with pytest.raises(TimeoutError):
                new.expect(MESSAGE, timeout=0.5)
        assert "error" not in recovered
        assert all(frame["flags"] & RESUMED for frame in attached)
        assert (first, second) == (["b", "c", "d"], ["c", "d"])
