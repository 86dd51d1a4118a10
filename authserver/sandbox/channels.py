"""Channels: who is attached (and with which modes) and the message history; each has a presence
set (:mod:`.presence`) whose events it broadcasts.

A channel numbers everything it broadcasts; ``channelSerial`` is ``<epoch>:<seq>``. An ATTACH that
carries one (clients send the last they processed, RTL4c1; a recovering client the one in its recovery
key) gets exactly what followed it (:meth:`Channel.position`, :meth:`Channel.catch_up`). An attachment
also remembers the last message number its connection was sent (or would have been sent while live),
for a re-ATTACH without a serial.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from authserver.errors import BadRequestError
from authserver.sandbox.budget import Kept, StoreBudget
from authserver.sandbox.history import Entry, HistoryQuery
from authserver.sandbox.limits import LimitError, SandboxLimits
from authserver.sandbox.payloads import payload_size
from authserver.sandbox.presence import Member as Member
from authserver.sandbox.presence import MemberKey, PresenceSet
from authserver.sandbox.protocol import Action, Flag, Frame, Outbound

MAX_CHANNEL_NAME = 512
#: Client-supplied message ids remembered per channel for idempotent publishing (Ably de-duplicates
#: within a window; the sandbox within the last this-many ids).
IDEMPOTENCY_WINDOW = 2000


class Subscriber(Protocol):
    """The side of a connection a channel talks to."""

    @property
    def id(self) -> str: ...

    @property
    def echo(self) -> bool: ...

    @property
    def live(self) -> bool: ...

    def deliver(self, frame: Frame | Outbound) -> None: ...


@dataclass
class Attachment:
    subscriber: Subscriber
    #: The modes granted: what the ATTACH asked for ∩ what the capability allows.
    modes: int
    #: Number of the last message this attachment has been given (or skipped on purpose).
    seen_seq: int
    #: The modes the ATTACH asked for (a new capability after AUTH re-grants from these).
    requested: int = 0
    #: Set when a new transport takes the connection over: nothing is delivered until the client
    #: re-attaches (ably-js drops messages for channels that are not ATTACHED, RTL17), and the
    #: re-ATTACH then replays everything since ``seen_seq``.
    paused: bool = False
    #: Set by a re-ATTACH on the transport that was delivering to it (not ``paused``): everything up to
    #: ``seen_seq`` is already on its way to the client, in order, on that socket.
    continuous: bool = False


@dataclass(frozen=True)
class Rewind:
    """The ``rewind`` channel param: a number of messages (``"10"``) or a duration (``"30s"``, ``"2m"``)."""

    count: int | None = None
    seconds: int = 0

    #: Ably replays at most 100 messages and at most 2 minutes back.
    MAX_COUNT = 100
    MAX_SECONDS = 120

    @classmethod
    def parse(cls, value: object) -> Rewind:
        """The param as sent: a string, or a JSON/msgpack integer (ably-js's own suite sends ``{rewind: 1}``,
        which Ably accepts).

        :raises BadRequestError: 40000 for a value that is neither a count nor a duration.
        """
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if isinstance(text, str) and 1 <= len(text) <= 7 and text.isascii():
            amount, unit = (text, "") if text.isdigit() else (text[:-1], text[-1])
            seconds = {"s": 1, "m": 60}.get(unit)
            if amount.isdigit() and len(amount) <= 6 and unit == "":
                return cls(count=min(int(amount), cls.MAX_COUNT))
            if amount.isdigit() and seconds is not None:
                return cls(seconds=min(int(amount) * seconds, cls.MAX_SECONDS))
        raise BadRequestError("rewind must be a number of messages or a duration such as 30s or 2m", code=40000)


def check_channel_name(name: object) -> str:
    """:raises BadRequestError: 40010 for a name Ably would not accept here."""
    if not isinstance(name, str) or not name:
        raise BadRequestError("channel name must be a non-empty string", code=40010)
    if len(name) > MAX_CHANNEL_NAME:
        raise BadRequestError(f"channel name is longer than {MAX_CHANNEL_NAME} characters", code=40010)
    if name.startswith("["):
        raise BadRequestError("qualified channels ([meta], [?params]) are not supported by the sandbox", code=40010)
    if any(not ch.isprintable() for ch in name):
        raise BadRequestError("channel name contains control characters", code=40010)
    if "" in name.split(":"):
        # ably-js channel.test.js channelattachinvalid / channelattach_publish_invalid: ':hell' is 40010.
        raise BadRequestError("channel name has an empty segment (a leading, trailing or doubled ':')", code=40010)
    return name


class Channel:
    """One channel; its history and members count against ``budget`` (shared by all channels)."""

    def __init__(self, name: str, limits: SandboxLimits, budget: StoreBudget | None = None) -> None:
        self.name = name
        self.epoch = secrets.token_hex(3)
        self.seq = 0
        self._limits = limits
        self._budget = budget or StoreBudget(limits.max_stored_bytes)
        self._history: deque[tuple[int, Member, Kept]] = deque()
        self._dropped_upto = 0  # seq of the newest message no longer in history
        self._dropped_count = 0  # how many messages fell out of history
        self.presence = PresenceSet(limits, self._budget)
        self.attachments: dict[str, Attachment] = {}
        self._recent_ids: OrderedDict[str, None] = OrderedDict()
        #: Presence events for presence history (RSP4): (seq, event, bytes reserved from the budget).
        self._presence_log: deque[tuple[int, Member, int]] = deque()
        self._presence_dropped = 0

    @property
    def serial(self) -> str:
        return f"{self.epoch}:{self.seq}"

    @property
    def members(self) -> dict[MemberKey, Member]:
        return self.presence.members

    @property
    def idle(self) -> bool:
        return not self.attachments and not self.presence.members

    # -- attachments ----------------------------------------------------------------------------------

    def attach(self, subscriber: Subscriber, modes: int, *, requested: int | None = None) -> tuple[Attachment, bool]:
        """Attach (or re-attach) ``subscriber``; returns the attachment and whether it already existed.

        Called only through :class:`~.attachments.Attachments`, the owner of attachment state.
        """
        wanted = modes if requested is None else requested
        existing = self.attachments.get(subscriber.id)
        if existing is not None:
            existing.continuous = not existing.paused
            existing.subscriber, existing.modes, existing.paused = subscriber, modes, False
            existing.requested = wanted
            return existing, True
        attachment = Attachment(subscriber, modes, self.seq, wanted)
        self.attachments[subscriber.id] = attachment
        return attachment, False

    def detach(self, connection_id: str) -> Attachment | None:
        return self.attachments.pop(connection_id, None)

    # -- messages ---------------------------------------------------------------------------------------

    def first_time(self, message_id: str) -> bool:
        """Whether a client-supplied message id is new here (idempotent publishing, RSL1k / RTL6a1);
        remembers it."""
        if message_id in self._recent_ids:
            return False
        self._recent_ids[message_id] = None
        if len(self._recent_ids) > IDEMPOTENCY_WINDOW:
            self._recent_ids.popitem(last=False)
        return True

    def publish(self, messages: list[Member], *, origin: str | None, frame_fields: dict[str, Any]) -> None:
        """Keep ``messages`` (already stamped) in history and send them to every subscribed attachment."""
        if not messages:
            return
        self.seq += 1
        for message in messages:
            self._history.append((self.seq, message, self._budget.keep(self, payload_size(message))))
        while len(self._history) > self._limits.max_history_per_channel:
            self._budget.forget(self._drop_oldest())
        self._budget.make_room()
        frame = Outbound(
            {
                "action": int(Action.MESSAGE),
                "channel": self.name,
                "channelSerial": self.serial,
                **frame_fields,
                "messages": messages,
            }
        )
        for attachment in list(self.attachments.values()):
            subscriber = attachment.subscriber
            if not subscriber.live or attachment.paused or not attachment.modes & Flag.SUBSCRIBE:
                continue
            attachment.seen_seq = self.seq
            if origin == subscriber.id and not subscriber.echo:
                continue
            subscriber.deliver(frame)

    def _drop_oldest(self) -> Kept:
        seq, _, kept = self._history.popleft()
        self._dropped_upto = seq
        self._dropped_count += 1
        return kept

    def forget_oldest(self) -> None:
        """The store budget is exhausted: drop the oldest message (the budget releases it)."""
        self._drop_oldest()

    def release(self) -> None:
        """The channel is being forgotten: give its history and members back to the budget."""
        while self._history:
            self._budget.forget(self._drop_oldest())
        while self._presence_log:
            self._budget.release(self._presence_log.popleft()[2])
        self.presence.clear()

    def _log_presence(self, events: list[Member]) -> None:
        """Keep presence events for presence history, at most ``max_history_per_channel``; an event that
        does not fit the store budget is not kept (history is best effort, presence itself is not)."""
        for event in events:
            try:
                cost = self._budget.reserve(payload_size(event))
            except LimitError:
                continue
            self._presence_log.append((self.seq, event, cost))
        while len(self._presence_log) > self._limits.max_history_per_channel:
            self._budget.release(self._presence_log.popleft()[2])
            self._presence_dropped += 1

    def rewind(self, attachment: Attachment, rewind: Rewind, *, now_ms: int) -> list[Frame]:
        """MESSAGE frames for a new attachment's ``rewind`` channel param: the last ``count`` messages,
        or those of the last ``seconds`` (what Ably replays after ATTACHED)."""
        if not attachment.modes & Flag.SUBSCRIBE:
            return []
        kept = [(seq, m) for seq, m, _ in self._history]
        if rewind.count is not None:
            selected = kept[-rewind.count :] if rewind.count else []
        else:
            since = now_ms - rewind.seconds * 1000
            selected = [(seq, m) for seq, m in kept if int(m.get("timestamp", 0)) >= since]
        return self._message_frames(selected)

    def position(self, channel_serial: object) -> int | None:
        """The message number a ``channelSerial`` names on this channel; None when it is not one of this
        channel's (another channel's, an earlier incarnation's, or ahead of it)."""
        if not isinstance(channel_serial, str) or len(channel_serial) > 64:
            return None
        epoch, colon, number = channel_serial.partition(":")
        if not colon or epoch != self.epoch or not (number.isascii() and number.isdigit()):
            return None
        seq = int(number)
        return seq if seq <= self.seq else None

    def catch_up(
        self, attachment: Attachment, since: int | None = None, *, not_before_ms: int | None = None
    ) -> tuple[list[Frame], bool]:
        """MESSAGE frames after message number ``since`` (default: the last one ``attachment`` was given),
        and whether nothing after it is lost (continuity, the RESUMED flag).

        Lost: gone from history, or published before ``not_before_ms`` (Ably keeps what a client missed for
        the connection state TTL, two minutes; a message older than that is not replayed).
        """
        start = attachment.seen_seq if since is None else since
        after = [(seq, m) for seq, m, _ in self._history if seq > start]
        missed = [(seq, m) for seq, m in after if not_before_ms is None or int(m.get("timestamp", 0)) >= not_before_ms]
        complete = self._dropped_upto <= start and len(missed) == len(after)
        attachment.seen_seq = self.seq
        if not attachment.modes & Flag.SUBSCRIBE:
            return [], complete
        return self._message_frames(missed), complete

    def _message_frames(self, items: list[tuple[int, Member]]) -> list[Frame]:
        """Kept messages as MESSAGE frames, one per publish, each with the channel serial it had."""
        return [
            {
                "action": int(Action.MESSAGE),
                "channel": self.name,
                "channelSerial": f"{self.epoch}:{seq}",
                "messages": group,
            }
            for seq, group in _group_by_seq(items)
        ]

    def entries(self) -> list[Entry]:
        """The message history, numbered in publish order (see :mod:`.history`)."""
        return [Entry(n, seq, m) for n, (seq, m, _) in enumerate(self._history, start=self._dropped_count)]

    def presence_entries(self) -> list[Entry]:
        """The presence events broadcast (enter, update, leave), numbered likewise."""
        return [Entry(n, seq, m) for n, (seq, m, _) in enumerate(self._presence_log, start=self._presence_dropped)]

    def history(self, *, forwards: bool, cursor: int | None, limit: int) -> tuple[list[Member], int | None]:
        """One page of history (newest first unless ``forwards``) and the cursor of the next page, if any."""
        items, next_cursor = HistoryQuery(limit, forwards, cursor).page(self.entries(), epoch=self.epoch)
        return [dict(m) for m in items], next_cursor

    # -- presence ---------------------------------------------------------------------------------------

    def apply_presence(self, message: Member) -> Member | None:
        """See :meth:`PresenceSet.apply`."""
        return self.presence.apply(message)

    def remove_members(self, connection_id: str, *, now_ms: int) -> list[Member]:
        """See :meth:`PresenceSet.remove_connection`."""
        return self.presence.remove_connection(connection_id, now_ms=now_ms)

    def reclaim_members(self, connection_id: str, user_claim: str | None, *, now_ms: int) -> list[Member]:
        """See :meth:`PresenceSet.reclaim`."""
        return self.presence.reclaim(connection_id, user_claim, now_ms=now_ms)

    def broadcast_presence(self, events: list[Member], *, frame_fields: dict[str, Any]) -> None:
        if not events:
            return
        self.seq += 1
        self._log_presence(events)
        frame = Outbound(
            {
                "action": int(Action.PRESENCE),
                "channel": self.name,
                "channelSerial": self.serial,
                **frame_fields,
                "presence": events,
            }
        )
        for attachment in list(self.attachments.values()):
            if attachment.subscriber.live and not attachment.paused and attachment.modes & Flag.PRESENCE_SUBSCRIBE:
                attachment.subscriber.deliver(frame)

    def sync_frames(self) -> list[Frame]:
        return self.presence.sync_frames(self.name)


def _group_by_seq(items: list[tuple[int, Member]]) -> Iterator[tuple[int, list[Member]]]:
    group: list[Member] = []
    current: int | None = None
    for seq, message in items:
        if current is not None and seq != current:
            yield current, group
            group = []
        current = seq
        group.append(message)
    if current is not None:
        yield current, group


class ChannelRegistry:
    """All channels, at most ``max_channels``; idle channels are forgotten first when full."""

    def __init__(self, limits: SandboxLimits) -> None:
        self._limits = limits
        self._channels: dict[str, Channel] = {}
        self.budget = StoreBudget(limits.max_stored_bytes)

    def __len__(self) -> int:
        return len(self._channels)

    def __iter__(self) -> Iterator[Channel]:
        return iter(list(self._channels.values()))

    def get(self, name: str) -> Channel | None:
        return self._channels.get(name)

    def get_or_create(self, name: str) -> Channel:
        """:raises LimitError: 90021 when ``max_channels`` channels are all in use."""
        channel = self._channels.get(name)
        if channel is not None:
            return channel
        if len(self._channels) >= self._limits.max_channels:
            idle = next((c for c in self._channels.values() if c.idle), None)
            if idle is None:
                raise LimitError(
                    f"the sandbox holds the maximum of {self._limits.max_channels} channels", code=90021, status=429
                )
            del self._channels[idle.name]
            idle.release()
        channel = self._channels[name] = Channel(check_channel_name(name), self._limits, self.budget)
        return channel
