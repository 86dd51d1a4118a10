"""The byte budget shared by every channel's history and presence set (``max_stored_bytes``).

History is kept in publish order across channels; when the budget is exceeded the oldest messages
of *any* channel are forgotten first. Presence is current state, not a log: a member that does not
fit even once all history is gone is refused.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

from authserver.sandbox.limits import LimitError

#: What keeping one message or member costs beyond its payload (ids, timestamps, dict overhead).
ENTRY_OVERHEAD = 100


class HistoryOwner(Protocol):
    def forget_oldest(self) -> None:
        """Drop the oldest message kept (the one the budget names), releasing it."""


@dataclass(eq=False)
class Kept:
    """One message in some channel's history, as the budget sees it."""

    owner: HistoryOwner
    size: int
    alive: bool = True


class StoreBudget:
    """Bytes held by history and presence across channels, at most ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._history: deque[Kept] = deque()
        self._alive = 0

    def keep(self, owner: HistoryOwner, payload_size: int) -> Kept:
        """Account for one message added to ``owner``'s history (call :meth:`make_room` afterwards)."""
        kept = Kept(owner, payload_size + ENTRY_OVERHEAD)
        self._history.append(kept)
        self.used += kept.size
        self._alive += 1
        return kept

    def forget(self, kept: Kept) -> None:
        """A message left its channel's history (trimmed, evicted or its channel dropped)."""
        if not kept.alive:
            return
        kept.alive = False
        self.used -= kept.size
        self._alive -= 1
        # Entries die out of order (per-channel trimming); compact so dead ones cannot pile up.
        if len(self._history) > 2 * self._alive + 1024:
            self._history = deque(k for k in self._history if k.alive)

    def make_room(self, needed: int = 0) -> bool:
        """Forget the oldest history until ``needed`` more bytes fit; whether they do."""
        while self.used + needed > self.max_bytes and self._history:
            kept = self._history.popleft()
            if kept.alive:
                kept.owner.forget_oldest()
                self.forget(kept)
        return self.used + needed <= self.max_bytes

    def reserve(self, size: int) -> int:
        """Take ``size`` payload bytes for a presence member; returns what to :meth:`release` later.

        :raises LimitError: 42910 when it does not fit even without any history.
        """
        cost = size + ENTRY_OVERHEAD
        if not self.make_room(cost):
            raise LimitError(f"the sandbox holds the maximum of {self.max_bytes} bytes of messages and presence")
        self.used += cost
        return cost

    def release(self, cost: int) -> None:
        self.used -= cost
