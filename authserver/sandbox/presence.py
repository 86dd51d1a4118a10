"""A channel's presence set: the members present, what entering, updating and leaving broadcast, and
the SYNC pages that tell a newly attached client who is there.

A member is one clientId on one connection. Members count against the sandbox's store budget; a
member that does not fit is refused rather than forgetting anyone.
"""

from __future__ import annotations

import secrets
from typing import Any

from authserver.sandbox.budget import StoreBudget
from authserver.sandbox.limits import LimitError, SandboxLimits
from authserver.sandbox.payloads import payload_size, stamp_user_claim
from authserver.sandbox.protocol import Action, Frame, PresenceAction

SYNC_PAGE_SIZE = 100
Member = dict[str, Any]
MemberKey = tuple[str, str]  # (connectionId, clientId)


def _same_payload(a: Member, b: Member) -> bool:
    return all(a.get(k) == b.get(k) for k in ("data", "encoding", "extras"))


class PresenceSet:
    """The members of one channel, at most ``max_presence_members``; their bytes count against ``budget``."""

    def __init__(self, limits: SandboxLimits, budget: StoreBudget) -> None:
        self._limits = limits
        self._budget = budget
        self._costs: dict[MemberKey, int] = {}
        self.members: dict[MemberKey, Member] = {}

    def apply(self, message: Member) -> Member | None:
        """Apply one stamped ENTER/UPDATE/LEAVE; returns the event to broadcast, or None.

        Re-entering with unchanged data (clients re-enter after every re-attach) broadcasts nothing.

        :raises LimitError: the channel already has ``max_presence_members`` members (91003), or the
            sandbox's store budget is spent (42910).
        """
        key: MemberKey = (message["connectionId"], message["clientId"])
        existing = self.members.get(key)
        action = message["action"]
        if action == PresenceAction.LEAVE:
            if existing is None:
                return None
            del self.members[key]
            self._budget.release(self._costs.pop(key, 0))
            return message
        if existing is None and len(self.members) >= self._limits.max_presence_members:
            raise LimitError(
                f"channel has the maximum of {self._limits.max_presence_members} presence members",
                code=91003,
                status=400,
            )
        if existing is not None and _same_payload(existing, message):
            return None
        cost = self._budget.reserve(payload_size(message))
        self._budget.release(self._costs.pop(key, 0))
        self._costs[key] = cost
        self.members[key] = {**message, "action": int(PresenceAction.PRESENT)}
        if existing is not None:
            return {**message, "action": int(PresenceAction.UPDATE)}
        return message

    def remove_connection(self, connection_id: str, *, now_ms: int) -> list[Member]:
        """Drop the members of a connection that went away; returns synthesised LEAVE events."""
        events: list[Member] = []
        for key in [k for k in self.members if k[0] == connection_id]:
            member = self.members.pop(key)
            self._budget.release(self._costs.pop(key, 0))
            # The id is deliberately not prefixed by the connectionId: clients then treat the LEAVE as
            # synthesised and compare timestamps (RTP2b1), which must be newer than the member's.
            timestamp = max(now_ms, int(member.get("timestamp", 0)) + 1)
            # Its extras too: a subscriber reads the member's (current) user claim on the LEAVE as on the ENTER.
            leave = {k: v for k, v in member.items() if k in ("clientId", "connectionId", "data", "encoding", "extras")}
            leave.update(
                action=int(PresenceAction.LEAVE),
                id=f"leave:{connection_id}:{timestamp}:{len(events)}",
                timestamp=timestamp,
            )
            events.append(leave)
        return events

    def reclaim(self, connection_id: str, user_claim: str | None, *, now_ms: int) -> list[Member]:
        """A connection's credentials changed (AUTH): its members take the new token's ``user_claim``.

        Returns an UPDATE for each member whose claim changed. Its id is not prefixed by the connectionId
        (the sandbox, not the client, sent it), so clients compare timestamps (RTP2b1): newer than the member's.

        :raises LimitError: 42910 when the sandbox's store budget cannot hold a longer claim.
        """
        events: list[Member] = []
        for key in [k for k in self.members if k[0] == connection_id]:
            member = self.members[key]
            extras = member.get("extras")
            if (extras.get("userClaim") if isinstance(extras, dict) else None) == user_claim:
                continue
            timestamp = max(now_ms, int(member.get("timestamp", 0)) + 1)
            updated = stamp_user_claim(dict(member), user_claim)
            updated.update(id=f"claim:{connection_id}:{timestamp}:{len(events)}", timestamp=timestamp)
            cost = self._budget.reserve(payload_size(updated))
            self._budget.release(self._costs.pop(key, 0))
            self._costs[key] = cost
            self.members[key] = updated
            events.append({**updated, "action": int(PresenceAction.UPDATE)})
        return events

    def clear(self) -> None:
        """The channel is being forgotten: give the members' bytes back to the budget."""
        for cost in self._costs.values():
            self._budget.release(cost)
        self._costs.clear()
        self.members.clear()

    def sync_frames(self, channel: str) -> list[Frame]:
        """SYNC pages for the current members; the last page's ``channelSerial`` has an empty cursor."""
        members = list(self.members.values())
        sync_id = secrets.token_hex(4)
        frames: list[Frame] = []
        for start in range(0, len(members), SYNC_PAGE_SIZE):
            end = start + SYNC_PAGE_SIZE
            cursor = str(end) if end < len(members) else ""
            frames.append(
                {
                    "action": int(Action.SYNC),
                    "channel": channel,
                    "channelSerial": f"{sync_id}:{cursor}",
                    "presence": members[start:end],
                }
            )
        return frames
