"""The offset between this host's clock and Ably's (``ABLY_TIME_SYNC``): measured against Ably's
``GET /time`` at start-up and periodically, applied to the ``iat``/``exp`` of issued tokens.

The measurement takes the midpoint of the request (``offset = ably - (sent + received) / 2``), as NTP
does; the round trip bounds its error.
"""

from __future__ import annotations

from collections.abc import Callable


class ClockOffset:
    """This host's clock corrected by the last measured offset to Ably's (0 until measured)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.offset: float = 0.0
        self.measured: bool = False

    def now(self) -> float:
        return self.clock() + self.offset

    def record(self, *, sent: float, received: float, ably_ms: int) -> float:
        """Record a measurement (``sent``/``received``: this host's clock around the request)."""
        self.offset = ably_ms / 1000 - (sent + received) / 2
        self.measured = True
        return self.offset

    def problem(self, max_offset: float) -> str | None:
        """Why issuance cannot be trusted: the offset beyond ``max_offset`` seconds (None: fine)."""
        if self.measured and abs(self.offset) > max_offset:
            return (
                f"this host's clock is {self.offset:+.1f} s off Ably's (more than {max_offset:.0f} s):"
                " fix its time synchronisation (NTP)"
            )
        return None
