"""The sandbox's in-memory world and the operations realtime and REST share: publish, presence,
connection lifecycle and revocation.

Everything runs on one event loop, so no locks: each operation completes without awaiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from authserver.core.capabilities import Capability
from authserver.core.keys import AblyKey
from authserver.errors import BadRequestError, ClientIdError
from authserver.sandbox.attachments import Attachments
from authserver.sandbox.channels import Channel, ChannelRegistry, Member, check_channel_name
from authserver.sandbox.connections import Connection, ConnectionRegistry
from authserver.sandbox.grants import Actor, JudgedCredential, Keyring
from authserver.sandbox.judge import TokenJudge
from authserver.sandbox.limits import LimitError, SandboxLimits
from authserver.sandbox.native_tokens import IssuedTokens, TokenIssuer
from authserver.sandbox.payloads import check_payload, payload_size, stamp_user_claim
from authserver.sandbox.protocol import PresenceAction
from authserver.sandbox.revocation import Revocation, Revocations, RevocationTarget

log = logging.getLogger("authserver.sandbox")

MESSAGE_FIELDS = ("id", "name", "data", "encoding", "extras", "clientId")
PRESENCE_ACTIONS = (PresenceAction.ENTER, PresenceAction.UPDATE, PresenceAction.LEAVE)


def _items(raw: object, what: str, limits: SandboxLimits) -> list[dict[str, Any]]:
    """The checked payloads of a publish or presence frame.

    :raises BadRequestError: 40000 malformed, 40009 too many or too large (Ably's ``maxMessageSize``).
    """
    if not isinstance(raw, list) or not raw or not all(isinstance(item, dict) for item in raw):
        raise BadRequestError(f"{what} must be a non-empty list of objects")
    if len(raw) > limits.max_messages_per_publish:
        raise BadRequestError(
            f"Too many {what} in one request (max_messages_per_publish={limits.max_messages_per_publish})",
            code=40009,
            status=413,
        )
    items = [check_payload(item) for item in raw]
    if sum(payload_size(item) for item in items) > limits.max_message_size:
        raise BadRequestError(
            f"Maximum message size exceeded (max_message_size={limits.max_message_size})", code=40009, status=413
        )
    return items


@dataclass(frozen=True)
class Publication:
    """Messages checked and stamped, ready to be committed to a channel."""

    channel: Channel
    messages: list[Member]
    origin: str | None
    frame_fields: dict[str, Any]
    #: The ids the client supplied (idempotent publishing); the others were given by the sandbox.
    supplied_ids: frozenset[str] = frozenset()

    def serials(self) -> list[str]:
        return [f"{self.channel.epoch}:{self.channel.seq + 1}:{i}" for i in range(len(self.messages))]


class Sandbox:
    """Keys, judge, tokens, revocations, connections and channels of one sandbox instance."""

    def __init__(
        self,
        keys: Sequence[AblyKey],
        *,
        clock: Callable[[], float],
        limits: SandboxLimits,
        key_capabilities: Mapping[str, Capability] | None,
        non_revocable_keys: Sequence[str] = (),
    ) -> None:
        self.limits = limits
        self.clock = clock
        #: Seconds added to ``clock``: a test sets it to put the sandbox's clock behind (or ahead of) an issuer's.
        self.clock_offset = 0.0
        self.keyring = Keyring(keys, key_capabilities, non_revocable=non_revocable_keys)
        self.revocations = Revocations(limits.max_revocations, max_token_ttl_ms=limits.max_token_ttl_ms)
        self.issued = IssuedTokens(limits.max_issued_tokens)
        self.judge = TokenJudge(self.keyring, limits, issued=self.issued, revocations=self.revocations)
        self.issuer = TokenIssuer(self.keyring, limits, self.issued)
        self.connections = ConnectionRegistry(limits)
        self.channels = ChannelRegistry(limits)
        self.attachments = Attachments(self.channels, limits)

    def now_ms(self) -> int:
        return int((self.clock() + self.clock_offset) * 1000)

    # -- publishing ---------------------------------------------------------------------------------

    def prepare_publish(
        self,
        channel_name: str,
        raw: object,
        *,
        grant: JudgedCredential,
        identity: Actor,
        origin: str | None,
        id_base: str,
    ) -> Publication:
        """Check a publish (clientIds, payloads, size) and stamp the messages.

        Permission is the caller's: :meth:`.Attachments.authorise` (realtime) or the REST endpoint.

        :raises AuthServerError: 40012 clientId not permitted, 40009 too large or too many,
            40000/40010 malformed.
        """
        check_channel_name(channel_name)
        items = _items(raw, "messages", self.limits)
        now = self.now_ms()
        messages: list[Member] = []
        supplied: set[str] = set()
        user_claim = grant.claims.user_claim(channel_name)
        for index, item in enumerate(items):
            message = stamp_user_claim({k: item[k] for k in MESSAGE_FIELDS if item.get(k) is not None}, user_claim)
            client_id = identity.message_client_id(item.get("clientId"))
            if client_id is not None:
                message["clientId"] = client_id
            if isinstance(message.get("id"), str):
                supplied.add(message["id"])
            else:
                message["id"] = f"{id_base}:{index}"
            if origin is not None:
                message["connectionId"] = origin
            message["timestamp"] = now
            messages.append(message)
        channel = self.channels.get_or_create(channel_name)
        fields: dict[str, Any] = {"id": id_base, "timestamp": now}
        if origin is not None:
            fields["connectionId"] = origin
        return Publication(channel, messages, origin, fields, frozenset(supplied))

    def commit_publish(self, publication: Publication) -> None:
        """Keep and fan out the publication; a message whose client-supplied id the channel has seen
        is dropped, so a retried publish is delivered once (idempotent publishing, RSL1k)."""
        channel = publication.channel
        fresh = [
            m for m in publication.messages if m["id"] not in publication.supplied_ids or channel.first_time(m["id"])
        ]
        channel.publish(fresh, origin=publication.origin, frame_fields=publication.frame_fields)

    # -- presence -----------------------------------------------------------------------------------

    def apply_presence(
        self, connection: Connection, channel_name: str, raw: object, *, msg_serial: int
    ) -> list[Member]:
        """Check and apply presence ENTER/UPDATE/LEAVE from ``connection``; returns the events to broadcast.

        Permission is checked before, by :meth:`.Attachments.authorise`.

        :raises AuthServerError: 40012 no or wrong clientId, 40009 too large, 91003 too many members,
            42910 store budget spent, 40000 malformed.
        """
        check_channel_name(channel_name)
        items = _items(raw, "presence", self.limits)
        now = self.now_ms()
        stamped: list[Member] = []
        user_claim = connection.grant.claims.user_claim(channel_name)
        for index, item in enumerate(items):
            action = item.get("action")
            if action not in PRESENCE_ACTIONS:
                raise BadRequestError("presence action must be enter (2), leave (3) or update (4)")
            client_id = connection.identity.message_client_id(item.get("clientId"))
            if client_id is None:
                raise ClientIdError("Malformed message; no clientId in message or inferred from connection")
            member = stamp_user_claim(
                {k: item[k] for k in ("data", "encoding", "extras") if item.get(k) is not None}, user_claim
            )
            member.update(
                action=int(action),
                clientId=client_id,
                connectionId=connection.id,
                id=f"{connection.id}:{msg_serial}:{index}",
                timestamp=now,
            )
            stamped.append(member)
        channel = self.channels.get_or_create(channel_name)
        events = [event for member in stamped if (event := channel.apply_presence(member)) is not None]
        if any(k[0] == connection.id for k in channel.members):
            connection.presence_channels.add(channel_name)
        else:
            connection.presence_channels.discard(channel_name)
        return events

    def broadcast_presence(self, channel_name: str, events: list[Member], *, frame_id: str) -> None:
        channel = self.channels.get(channel_name)
        if channel is not None:
            channel.broadcast_presence(events, frame_fields={"id": frame_id, "timestamp": self.now_ms()})

    def leave_channel(self, connection: Connection, channel_name: str) -> None:
        """Remove ``connection``'s members from a channel, broadcasting LEAVEs."""
        channel = self.channels.get(channel_name)
        connection.presence_channels.discard(channel_name)
        if channel is None:
            return
        events = channel.remove_members(connection.id, now_ms=self.now_ms())
        channel.broadcast_presence(events, frame_fields={"timestamp": self.now_ms()})

    def reclaim_presence(self, connection: Connection) -> None:
        """After an AUTH: ``connection``'s members carry the new token's user claims, broadcast as UPDATEs.

        Ably copies the claim from the connection's token into its presence messages (JWT docs, channel
        claims); the sandbox keeps a member's claim that of the token the connection holds now, so
        subscribers, ``presence.get()``, SYNC and the LEAVE agree with it.
        """
        for name in list(connection.presence_channels):
            channel = self.channels.get(name)
            if channel is None:
                continue
            try:
                events = channel.reclaim_members(
                    connection.id, connection.grant.claims.user_claim(name), now_ms=self.now_ms()
                )
            except LimitError as exc:
                log.warning("connection %s: presence on %s keeps its old user claim: %s", connection.id, name, exc)
                continue
            channel.broadcast_presence(events, frame_fields={"timestamp": self.now_ms()})

    # -- connection lifecycle -----------------------------------------------------------------------

    def open_connection(
        self, grant: JudgedCredential, identity: Actor, *, echo: bool, remain_present_ms: int | None = None
    ) -> Connection:
        """:raises LimitError: every connection slot is live."""
        stale = self.connections.oldest_resumable() if self.connections.full else None
        if stale is not None:
            self.discard(stale)
        connection = self.connections.create(grant, identity, echo=echo, remain_present_ms=remain_present_ms)
        log.info("connection %s opened (key %s, clientId %s)", connection.id, grant.key_name, identity.client_id)
        return connection

    def transport_lost(self, connection: Connection) -> None:
        """The socket went without CLOSE: keep the state for resume, members for the grace period."""
        connection.transport = None
        loop = asyncio.get_running_loop()
        ttl = self.limits.connection_state_ttl_ms / 1000
        remain = connection.remain_present_ms
        grace_ms = min(self.limits.presence_grace_ms if remain is None else remain, self.limits.connection_state_ttl_ms)
        grace = grace_ms / 1000
        connection.timers["discard"] = loop.call_later(ttl, self.discard, connection)
        connection.timers["presence"] = loop.call_later(grace, self._leave_all, connection)
        log.info("connection %s disconnected; resumable for %.0f s", connection.id, ttl)

    def discard(self, connection: Connection) -> None:
        """Forget a connection (CLOSE, or no resume in time): detach everywhere, LEAVE its members."""
        connection.cancel_timers()
        self._leave_all(connection)
        self.attachments.detach_all(connection)
        connection.on_revoked = None
        self.connections.remove(connection)
        log.info("connection %s discarded", connection.id)

    def _leave_all(self, connection: Connection) -> None:
        connection.timers.pop("presence", None)
        for name in list(connection.presence_channels):
            self.leave_channel(connection, name)

    # -- revocation ---------------------------------------------------------------------------------

    def revoke(self, key_name: str, target: RevocationTarget, *, issued_before_ms: int, margin_ms: int) -> Revocation:
        """Revoke matching tokens of ``key_name`` and tell live connections that use one."""
        now = self.now_ms()
        entry = self.revocations.add(
            Revocation(key_name, target, issued_before_ms, applies_at_ms=now + margin_ms), now_ms=now
        )
        for connection in self.connections:
            if connection.on_revoked is not None and entry.covers(connection.grant):
                log.info("connection %s uses a revoked token (%s)", connection.id, target.kind)
                connection.on_revoked(entry.applies_at_ms)
        return entry
