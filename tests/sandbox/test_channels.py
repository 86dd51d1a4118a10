"""Channels in memory: bounded history, catch-up after a resume, presence fan-out and the channel limit
(the presence set itself: test_presence.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from authserver.errors import AuthServerError, BadRequestError
from authserver.sandbox import SandboxLimits
from authserver.sandbox.channels import Channel, ChannelRegistry, Rewind, check_channel_name
from authserver.sandbox.protocol import DEFAULT_MODES, Flag, Outbound

LIMITS = SandboxLimits(max_history_per_channel=3, max_presence_members=2, max_channels=2)


@dataclass
class FakeSubscriber:
    id: str
    echo: bool = True
    live: bool = True
    frames: list[dict[str, Any]] = field(default_factory=list)

    def deliver(self, frame: dict[str, Any] | Outbound) -> None:
        self.frames.append(frame.frame if isinstance(frame, Outbound) else frame)


def publish(channel: Channel, data: str) -> None:
    channel.publish([{"data": data}], origin=None, frame_fields={})


def test_history_keeps_the_newest_messages_only() -> None:
    channel = Channel("c", LIMITS)
    for i in range(5):
        publish(channel, f"m{i}")
    items, cursor = channel.history(forwards=False, cursor=None, limit=10)
    assert [m["data"] for m in items] == ["m4", "m3", "m2"]
    assert cursor is None


def test_a_resumed_attachment_gets_what_it_missed_and_nothing_twice() -> None:
    channel = Channel("c", LIMITS)
    subscriber = FakeSubscriber("conn")
    attachment, _ = channel.attach(subscriber, DEFAULT_MODES)
    publish(channel, "live")
    subscriber.live = False
    publish(channel, "missed")
    subscriber.live = True
    attachment.paused = True  # a new transport: held until the client re-attaches
    publish(channel, "held")
    assert [f["messages"][0]["data"] for f in subscriber.frames] == ["live"]
    _, existed = channel.attach(subscriber, DEFAULT_MODES)
    frames, complete = channel.catch_up(attachment)
    assert existed and complete
    assert [f["messages"][0]["data"] for f in frames] == ["missed", "held"]
    assert channel.catch_up(attachment) == ([], True)


def test_catch_up_reports_a_gap_when_history_no_longer_reaches_back() -> None:
    channel = Channel("c", LIMITS)
    subscriber = FakeSubscriber("conn", live=False)
    attachment, _ = channel.attach(subscriber, DEFAULT_MODES)
    for i in range(5):
        publish(channel, f"m{i}")
    frames, complete = channel.catch_up(attachment)
    assert not complete
    assert len(frames) == 3


def test_a_channel_serial_names_a_point_of_this_channel_only() -> None:
    """Where an ATTACH carrying ``channelSerial`` carries on from; a serial this channel cannot place is None."""
    channel, other = Channel("c", LIMITS), Channel("c", LIMITS)  # the same name, another incarnation
    subscriber = FakeSubscriber("conn", live=False)
    attachment, _ = channel.attach(subscriber, DEFAULT_MODES)
    for i in range(3):
        publish(channel, f"m{i}")
    first = channel.position(f"{channel.epoch}:1")
    assert first == 1
    frames, complete = channel.catch_up(attachment, first)
    assert complete and [f["messages"][0]["data"] for f in frames] == ["m1", "m2"]
    assert [
        channel.position(s) for s in (f"{other.epoch}:1", f"{channel.epoch}:9", "1", None, f"{channel.epoch}:x")
    ] == [None] * 5


def test_catch_up_replays_only_what_is_younger_than_the_resume_window() -> None:
    """Ably keeps a dropped client's backlog for the connection state TTL: older messages are lost."""
    channel = Channel("c", LIMITS)
    attachment, _ = channel.attach(FakeSubscriber("conn", live=False), DEFAULT_MODES)
    for i in range(3):
        channel.publish([{"data": f"m{i}", "timestamp": 1000 * i}], origin=None, frame_fields={})
    frames, complete = channel.catch_up(attachment, 0, not_before_ms=1000)
    assert not complete and [f["messages"][0]["data"] for f in frames] == ["m1", "m2"]
    assert channel.catch_up(attachment, 1, not_before_ms=1000)[1]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5", Rewind(count=5)), (5, Rewind(count=5)), ("500", Rewind(count=100)), ("30s", Rewind(seconds=30))]
    + [("1m", Rewind(seconds=60)), ("10m", Rewind(seconds=120)), (0, Rewind(count=0))],
)
def test_rewind_is_a_count_or_a_duration_string_or_an_integer(value: object, expected: Rewind) -> None:
    assert Rewind.parse(value) == expected


@pytest.mark.parametrize("value", ["forever", "", "1h", "m", "-1", True, 1.5, -1, None, "1 m", "１"])
def test_other_rewind_values_are_40000(value: object) -> None:
    with pytest.raises(BadRequestError) as raised:
        Rewind.parse(value)
    assert raised.value.code == 40000


def test_presence_subscribers_only_get_presence_with_the_mode() -> None:
    channel = Channel("c", LIMITS)
    without = FakeSubscriber("a")
    channel.attach(without, Flag.SUBSCRIBE)
    member = {"action": 2, "clientId": "x", "connectionId": "b", "id": "b:0:0", "timestamp": 1}
    event = channel.apply_presence(member)
    assert event is not None
    channel.broadcast_presence([event], frame_fields={})
    assert without.frames == []


def test_channel_limit_evicts_idle_channels_then_refuses_90021() -> None:
    registry = ChannelRegistry(LIMITS)
    registry.get_or_create("idle")
    busy = registry.get_or_create("busy")
    busy.attach(FakeSubscriber("s"), DEFAULT_MODES)
    registry.get_or_create("new")  # "idle" makes room
    assert registry.get("idle") is None
    registry.get_or_create("new").attach(FakeSubscriber("t"), DEFAULT_MODES)
    with pytest.raises(AuthServerError) as caught:
        registry.get_or_create("one-too-many")
    assert (caught.value.code, caught.value.status) == (90021, 429)
    assert "max_channels" in caught.value.message or "maximum of 2 channels" in caught.value.message


@pytest.mark.parametrize("name", ["", "[meta]log", "bad\nname", "x" * 600, 7])
def test_names_ably_would_refuse_are_40010(name: object) -> None:
    with pytest.raises(AuthServerError) as caught:
        check_channel_name(name)
    assert caught.value.code == 40010


def test_limits_must_be_positive() -> None:
    with pytest.raises(AuthServerError) as caught:
        SandboxLimits(max_connections=0, max_history_per_channel=-1)
    assert "max_connections" in caught.value.message
    assert "max_history_per_channel" in caught.value.message


class TestStoreBudget:
    """History and presence of all channels together stay within ``max_stored_bytes``."""

    LIMITS = SandboxLimits(max_stored_bytes=1000, max_history_per_channel=100)

    def test_history_over_budget_forgets_the_oldest_messages_of_any_channel(self) -> None:
        registry = ChannelRegistry(self.LIMITS)
        old, new = registry.get_or_create("old"), registry.get_or_create("new")
        for i in range(3):
            publish(old, f"{i}" * 150)  # 150 + 100 overhead each: 750 of 1000, then 1250 -> "0" goes
        for i in range(2):
            publish(new, f"{i}" * 150)
        assert registry.budget.used <= 1000
        assert [m["data"][0] for m in old.history(forwards=True, cursor=None, limit=10)[0]] == ["1", "2"]
        assert [m["data"][0] for m in new.history(forwards=True, cursor=None, limit=10)[0]] == ["0", "1"]

    def test_a_resumed_attachment_learns_that_evicted_history_is_gone(self) -> None:
        registry = ChannelRegistry(self.LIMITS)
        channel = registry.get_or_create("c")
        attachment, _ = channel.attach(FakeSubscriber("s", live=False), DEFAULT_MODES)
        for i in range(5):
            publish(channel, f"{i}" * 150)
        frames, complete = channel.catch_up(attachment)
        assert not complete
        assert [f["messages"][0]["data"][0] for f in frames] == ["1", "2", "3", "4"]

    def test_presence_that_does_not_fit_even_without_history_is_refused_42910(self) -> None:
        registry = ChannelRegistry(self.LIMITS)
        channel = registry.get_or_create("c")
        publish(channel, "h" * 500)
        member = {"action": 2, "connectionId": "c", "id": "i", "timestamp": 1}
        channel.apply_presence({**member, "clientId": "a", "data": "a" * 450})
        assert channel.history(forwards=True, cursor=None, limit=10)[0] == []  # history made room
        with pytest.raises(AuthServerError) as caught:
            channel.apply_presence({**member, "clientId": "b", "data": "b" * 450})
        assert (caught.value.code, caught.value.status) == (42910, 429)
        channel.apply_presence({**member, "clientId": "a", "action": 3})
        channel.apply_presence({**member, "clientId": "b", "data": "b" * 450})  # the LEAVE gave the bytes back

    def test_a_forgotten_channel_gives_its_bytes_back(self) -> None:
        registry = ChannelRegistry(SandboxLimits(max_stored_bytes=1000, max_channels=1))
        publish(registry.get_or_create("first"), "x" * 500)
        assert registry.budget.used == 600
        registry.get_or_create("second")  # "first" is idle and goes
        assert registry.budget.used == 0


def test_a_published_frame_is_shared_and_encoded_once_per_format() -> None:
    channel = Channel("c", LIMITS)
    delivered: list[Any] = []

    @dataclass
    class Recorder(FakeSubscriber):
        def deliver(self, frame: dict[str, Any] | Outbound) -> None:
            delivered.append(frame)

    for n in range(3):
        channel.attach(Recorder(f"s{n}"), DEFAULT_MODES)
    publish(channel, "x")
    assert len(delivered) == 3 and all(frame is delivered[0] for frame in delivered)
    outbound = delivered[0]
    assert isinstance(outbound, Outbound)
    assert outbound.encoded("json") is outbound.encoded("json")
    assert isinstance(outbound.encoded("msgpack"), bytes)
