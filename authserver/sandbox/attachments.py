"""The attachment lifecycle: the one owner of "which connection is attached to which channel, with
which modes", and of what an attached connection may do there.

Nothing else changes attachment state. A frame's walk through the sandbox:

* ATTACH / DETACH (:mod:`.realtime` dispatch) -> :func:`~.frames.attach` / :func:`~.frames.detach` ->
  :class:`Attachments` -> :class:`~.channels.Channel` (ATTACHED, missed messages, SYNC).
* MESSAGE / PRESENCE -> :meth:`Attachments.authorise` here (capability, then attach mode: the only
  permission check on the realtime path) -> :class:`~.hub.Sandbox` (check payloads, stamp) -> for a
  MESSAGE :meth:`Attachments.admit_publish` here (the token's per-attachment publish rate) -> the
  channel's fan-out.
* AUTH -> :meth:`Attachments.reauthorise` (modes follow the new capability, widening or narrowing).
* A new transport, CLOSE, or a connection given up -> :meth:`Attachments.pause` /
  :meth:`Attachments.detach_all`.
"""

from __future__ import annotations

from authserver.errors import AuthServerError, RateLimitedError, TokenError
from authserver.sandbox.channels import Attachment, Channel, ChannelRegistry, check_channel_name
from authserver.sandbox.connections import Connection
from authserver.sandbox.grants import denied, require
from authserver.sandbox.limits import LimitError, SandboxLimits
from authserver.sandbox.payloads import is_wire_text
from authserver.sandbox.protocol import Action, Flag, Frame, error_frame, granted_modes

#: Which attach mode each realtime operation needs.
OPERATION_MODES = {"publish": Flag.PUBLISH, "presence": Flag.PRESENCE}
#: Ably's code for a rejected publish over a rate (42911 is its documented per-connection publish-rate
#: code; its code for the per-attachment limit is not public).
PUBLISH_RATE_CODE = 42911


class _Bucket:
    """A token bucket: ``rate`` messages per second, holding at most one second's worth (at least one).

    A publish is admitted when the bucket holds all its messages: a batch counts each one, so a batch
    larger than one second's worth is over the rate however long the client waited.
    """

    __slots__ = ("at_ms", "rate", "tokens")

    def __init__(self, rate: float, now_ms: int) -> None:
        self.rate = rate
        self.tokens = max(1.0, rate)
        self.at_ms = now_ms

    def refill(self, now_ms: int) -> None:
        elapsed = max(0, now_ms - self.at_ms) / 1000
        self.tokens = min(max(1.0, self.rate), self.tokens + elapsed * self.rate)
        self.at_ms = max(self.at_ms, now_ms)

    def retune(self, rate: float, now_ms: int) -> None:
        """Another rate (a renewed token): keep what is left, at most the new burst; refill at the new rate."""
        self.refill(now_ms)
        self.rate = rate
        self.tokens = min(self.tokens, max(1.0, rate))

    def take(self, count: int, now_ms: int) -> bool:
        self.refill(now_ms)
        if self.tokens < count:
            return False
        self.tokens -= count
        return True

    def full(self, now_ms: int) -> bool:
        return self.tokens + max(0, now_ms - self.at_ms) / 1000 * self.rate >= max(1.0, self.rate)


class Attachments:
    """Connection <-> channel attachments over a channel registry (bounded per connection)."""

    def __init__(self, channels: ChannelRegistry, limits: SandboxLimits) -> None:
        self._channels = channels
        self._limits = limits
        self._by_connection: dict[str, set[str]] = {}
        #: connection id -> channel -> publish-rate bucket (only for channels the token limits)
        self._buckets: dict[str, dict[str, _Bucket]] = {}

    def names(self, connection: Connection) -> list[str]:
        """The channels ``connection`` is attached to, sorted."""
        return sorted(self._by_connection.get(connection.id, ()))

    def get(self, connection: Connection, name: str) -> tuple[Channel, Attachment] | None:
        if name not in self._by_connection.get(connection.id, ()):
            return None
        channel = self._channels.get(name)
        attachment = channel.attachments.get(connection.id) if channel is not None else None
        if channel is None or attachment is None:
            return None
        return channel, attachment

    def attach(self, connection: Connection, name: str, requested: int) -> tuple[Channel, Attachment, bool]:
        """Attach (or re-attach) with modes ``requested ∩ capability``; whether it was attached already.

        :raises AuthServerError: 40160 no operation allowed on the channel, 42910 too many channels.
        """
        operations = connection.grant.capability.operations_for(name)
        if not operations:
            raise denied(name, "attach")
        held = self._by_connection.setdefault(connection.id, set())
        most = self._limits.max_channels_per_connection
        if name not in held and len(held) >= most:
            raise LimitError(f"the connection is attached to the maximum of {most} channels")
        channel = self._channels.get_or_create(name)
        attachment, existed = channel.attach(connection, requested & granted_modes(operations), requested=requested)
        held.add(name)
        return channel, attachment, existed

    def detach(self, connection: Connection, name: str) -> None:
        channel = self._channels.get(name)
        if channel is not None:
            channel.detach(connection.id)
        held = self._by_connection.get(connection.id)
        if held is not None:
            held.discard(name)
            if not held:
                del self._by_connection[connection.id]

    def detach_all(self, connection: Connection) -> None:
        for name in self.names(connection):
            self.detach(connection, name)
        self._buckets.pop(connection.id, None)

    def pause(self, connection: Connection) -> None:
        """A new transport took ``connection`` over: hold its channels' traffic until it re-attaches them."""
        for name in self.names(connection):
            found = self.get(connection, name)
            if found is not None:
                found[1].paused = True

    def reauthorise(self, connection: Connection) -> list[str]:
        """After an AUTH: each attachment's modes become what it asked for ∩ the new capability.

        A capability upgrade widens them (subscribe-only, then publish too: publishing is ACKed, as on
        Ably, ably-spec 8.5); channels no longer allowed at all are detached and returned (RTC8a1).
        """
        lost: list[str] = []
        for name in self.names(connection):
            found = self.get(connection, name)
            operations = connection.grant.capability.operations_for(name)
            if found is not None and operations:
                attachment = found[1]
                attachment.modes = attachment.requested & granted_modes(operations)
                continue
            self.detach(connection, name)
            if found is not None:
                lost.append(name)
        return lost

    def authorise(self, connection: Connection, name: str, operation: str) -> None:
        """The permission check for a realtime publish or presence message on channel ``name``.

        :raises AuthServerError: 40010 bad channel name; 40160 when the capability does not allow
            ``operation``, or the attachment's modes lack it (ably-js ``channel.test.js``
            ``checkCantPublish``/``checkCantEnterPresence`` expect 40160 for a mode not granted).
        """
        check_channel_name(name)
        require(connection.grant, name, operation)
        found = self.get(connection, name)
        if found is not None and not found[1].modes & OPERATION_MODES[operation]:
            raise TokenError(
                f"Channel denied access: mode {operation} was not requested or granted at attach ({name!r})",
                code=40160,
            )

    def admit_publish(self, connection: Connection, name: str, count: int, *, now_ms: int) -> None:
        """Count ``count`` messages against the token's ``ably.limits.publish.perAttachment.maxRate`` for
        ``name`` (the most specific resource wins), per connection and channel. A bucket outlives DETACH
        (re-attaching does not refill it) and goes with the connection. A renewed token (AUTH) with
        another rate for the channel keeps the bucket's level and refills it at the new rate from the next
        publish on. At most ``max_channels_per_connection`` buckets: refilled ones are forgotten to make
        room, a spent one never is (the publish is refused instead).

        :raises RateLimitedError: 42911 / 429 over the rate (a NACK: the connection stays up).
        """
        rate = connection.grant.claims.rate(name)
        if rate is None:
            return
        buckets = self._buckets.setdefault(connection.id, {})
        bucket = buckets.get(name)
        if bucket is not None and bucket.rate != rate:
            bucket.retune(rate, now_ms)  # NOTE: not a new bucket: AUTHing with another token must not refill it
        if bucket is None:
            limit = self._limits.max_channels_per_connection
            if len(buckets) >= limit:
                # A full bucket is the same as none: forget those before keeping another.
                for channel in [c for c, b in buckets.items() if b.full(now_ms)]:
                    del buckets[channel]
                if len(buckets) >= limit:
                    # NOTE: forgetting a spent bucket would refill it: publishing to enough other channels
                    # would lift a flooded channel's limit. Refused instead, and memory stays bounded.
                    raise _over_rate(
                        rate, name, f"; more than {limit} rate-limited channels published to within their refill time"
                    )
            bucket = buckets[name] = _Bucket(rate, now_ms)
        if not bucket.take(count, now_ms):
            raise _over_rate(rate, name)


def _over_rate(rate: float, name: str, detail: str = "") -> RateLimitedError:
    return RateLimitedError(
        "Rate limit exceeded; request rejected (nonfatal); "
        f"metric = channel.publish.perAttachment.maxRate; permitted rate = {rate:g}; channel = {name}{detail}",
        code=PUBLISH_RATE_CODE,
    )


def channel_error(name: object, error: AuthServerError) -> Frame:
    """A channel-scoped ERROR (the channel goes FAILED on the client); no ``channel`` if the name is unusable."""
    fields = {"channel": name} if is_wire_text(name) else {}
    return error_frame(Action.ERROR, error, **fields)
