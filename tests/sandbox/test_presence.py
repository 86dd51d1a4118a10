"""A channel's presence set: enter, update and leave, members of a dropped connection, SYNC pages."""

from __future__ import annotations

from typing import Any

import pytest

from authserver.errors import AuthServerError
from authserver.sandbox import SandboxLimits
from authserver.sandbox.budget import StoreBudget
from authserver.sandbox.presence import SYNC_PAGE_SIZE, PresenceSet

from .wire import SYNC

ENTER, PRESENT, LEAVE, UPDATE = 2, 1, 3, 4
LIMITS = SandboxLimits(max_presence_members=2)


def presence_set(limits: SandboxLimits = LIMITS) -> PresenceSet:
    return PresenceSet(limits, StoreBudget(limits.max_stored_bytes))


def event(action: int, client_id: str = "alice", connection_id: str = "conn", **fields: Any) -> dict[str, Any]:
    return {"action": action, "clientId": client_id, "connectionId": connection_id, "id": "conn:0:0", **fields}


def test_enter_is_broadcast_and_the_member_is_kept_as_present() -> None:
    members = presence_set()
    entered = event(ENTER, data="hi", timestamp=5)
    assert members.apply(entered) == entered
    assert members.members == {("conn", "alice"): {**entered, "action": PRESENT}}


def test_reentering_with_the_same_data_broadcasts_nothing() -> None:
    members = presence_set()
    members.apply(event(ENTER, data="hi"))
    assert members.apply(event(ENTER, data="hi")) is None


def test_entering_again_with_other_data_is_broadcast_as_an_update() -> None:
    members = presence_set()
    members.apply(event(ENTER, data="hi"))
    assert members.apply(event(ENTER, data="bye")) == event(UPDATE, data="bye")
    assert members.members[("conn", "alice")]["data"] == "bye"


def test_leave_removes_the_member_and_a_leave_of_no_member_is_not_broadcast() -> None:
    members = presence_set()
    members.apply(event(ENTER))
    assert members.apply(event(LEAVE)) == event(LEAVE)
    assert members.members == {}
    assert members.apply(event(LEAVE)) is None


def test_the_same_client_id_on_two_connections_is_two_members() -> None:
    members = presence_set()
    members.apply(event(ENTER, connection_id="one"))
    members.apply(event(ENTER, connection_id="two"))
    assert sorted(members.members) == [("one", "alice"), ("two", "alice")]


def test_member_limit_is_91003() -> None:
    members = presence_set()
    for n in range(2):
        members.apply(event(ENTER, client_id=f"u{n}"))
    with pytest.raises(AuthServerError) as caught:
        members.apply(event(ENTER, client_id="u3"))
    assert (caught.value.code, caught.value.status) == (91003, 400)


def test_members_of_a_dropped_connection_get_synthesised_leaves_newer_than_their_entry() -> None:
    members = presence_set()
    members.apply(event(ENTER, data="hi", timestamp=1_000, extras={"x": 1}))
    members.apply(event(ENTER, connection_id="other", timestamp=1_000))
    leaves = members.remove_connection("conn", now_ms=500)  # a clock behind the member's own stamp
    assert leaves == [
        {
            "action": LEAVE,
            "clientId": "alice",
            "connectionId": "conn",
            "data": "hi",
            "extras": {"x": 1},  # the member's extras, its user claim among them, as on its ENTER
            "id": "leave:conn:1001:0",  # not "<connectionId>:...": clients compare timestamps (RTP2b1)
            "timestamp": 1_001,
        }
    ]
    assert list(members.members) == [("other", "alice")]


def test_a_new_user_claim_updates_the_connections_members_and_nobody_elses() -> None:
    members = presence_set()
    members.apply(event(ENTER, data="hi", timestamp=1_000, extras={"userClaim": "old", "headers": {"h": 1}}))
    members.apply(event(ENTER, connection_id="other", timestamp=1_000, extras={"userClaim": "old"}))
    updates = members.reclaim("conn", "new", now_ms=500)  # a clock behind the member's own stamp
    assert updates == [
        {
            "action": UPDATE,
            "clientId": "alice",
            "connectionId": "conn",
            "data": "hi",
            "extras": {"userClaim": "new", "headers": {"h": 1}},
            "id": "claim:conn:1001:0",  # sent by the sandbox: clients compare timestamps (RTP2b1)
            "timestamp": 1_001,
        }
    ]
    assert members.members[("conn", "alice")]["extras"] == {"userClaim": "new", "headers": {"h": 1}}
    assert members.members[("conn", "alice")]["action"] == PRESENT
    assert members.members[("other", "alice")]["extras"] == {"userClaim": "old"}
    assert members.reclaim("conn", "new", now_ms=2_000) == []  # unchanged: nothing to tell
    members.reclaim("conn", None, now_ms=2_000)  # a token without a claim for the channel: the claim goes
    assert members.members[("conn", "alice")]["extras"] == {"headers": {"h": 1}}


def test_clear_gives_every_members_bytes_back_to_the_budget() -> None:
    budget = StoreBudget(10_000)
    members = PresenceSet(LIMITS, budget)
    members.apply(event(ENTER, data="x" * 500))
    assert budget.used > 0
    members.clear()
    assert (budget.used, members.members) == (0, {})


@pytest.mark.parametrize(
    ("count", "cursors"),
    [(0, []), (1, [""]), (SYNC_PAGE_SIZE, [""]), (SYNC_PAGE_SIZE + 1, [str(SYNC_PAGE_SIZE), ""])],
)
def test_sync_is_paged_and_the_last_page_has_an_empty_cursor(count: int, cursors: list[str]) -> None:
    members = presence_set(SandboxLimits(max_presence_members=SYNC_PAGE_SIZE + 1))
    for n in range(count):
        members.apply(event(ENTER, client_id=f"u{n}"))
    frames = members.sync_frames("room")
    assert [f["channelSerial"].split(":")[1] for f in frames] == cursors
    assert len({f["channelSerial"].split(":")[0] for f in frames}) <= 1  # one sync id for all pages
    assert all(f["action"] == SYNC and f["channel"] == "room" for f in frames)
    assert sum(len(f["presence"]) for f in frames) == count
