"""Channels in memory: bounded history, catch-up after a resume, presence bounds and the channel limit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from authserver.errors import AuthServerError
from authserver.sandbox import SandboxLimits
from authserver.sandbox.channels import Channel, ChannelRegistry, check_channel_name
from authserver.sandbox.protocol import DEFAULT_MODES, Flag

LIMITS = SandboxLimits(max_history_per_channel=3, max_presence_members=2, max_channels=2)


@dataclass
class FakeSubscriber:
    id: str
    echo: bool = True
    live: bool = True
    frames: list[dict[str, Any]] = field(default_factory=list)

    def deliver(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)


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


def test_presence_subscribers_only_get_presence_with_the_mode() -> None:
    channel = Channel("c", LIMITS)
    without = FakeSubscriber("a")
    channel.attach(without, Flag.SUBSCRIBE)
    member = {"action": 2, "clientId": "x", "connectionId": "b", "id": "b:0:0", "timestamp": 1}
    event = channel.apply_presence(member)
    assert event is not None
    channel.broadcast_presence([event], frame_fields={})
    assert without.frames == []


def test_presence_member_limit_is_91003() -> None:
    channel = Channel("c", LIMITS)
    for n in range(2):
        channel.apply_presence({"action": 2, "clientId": f"u{n}", "connectionId": "c", "id": "i", "timestamp": 1})
    with pytest.raises(AuthServerError) as caught:
        channel.apply_presence({"action": 2, "clientId": "u3", "connectionId": "c", "id": "i", "timestamp": 1})
    assert caught.value.code == 91003


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
