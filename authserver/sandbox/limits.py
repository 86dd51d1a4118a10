"""Bounds and timings of the sandbox: everything is in memory, so everything is capped."""

from __future__ import annotations

from dataclasses import dataclass, fields

from authserver.errors import AuthServerError, ConfigError


@dataclass(frozen=True)
class SandboxLimits:
    """How much the sandbox keeps and how its clocks run. Times are milliseconds.

    The defaults match what Ably advertises where it advertises something (message size 64 KiB,
    connection state TTL 2 min, heartbeat every 15 s, AUTH 30 s before expiry, TokenRequest window
    2 min, token TTL at most 24 h) and are otherwise small enough that a runaway test cannot eat the
    machine.
    """

    #: Connections held at once, live or waiting to be resumed.
    max_connections: int = 200
    #: Channels held at once; idle channels (no attachments, no members) are evicted first.
    max_channels: int = 1000
    #: Total size of the messages in one MESSAGE frame / REST publish (Ably ``maxMessageSize``).
    max_message_size: int = 65536
    #: Largest inbound WebSocket frame or REST body accepted at all.
    max_frame_size: int = 524288
    #: Messages kept per channel for history and resume.
    max_history_per_channel: int = 100
    #: Presence members per channel.
    max_presence_members: int = 200
    #: Messages in one MESSAGE frame / REST publish (each stamped and relayed, so each costs).
    max_messages_per_publish: int = 1000
    #: Channels one connection may be attached to at once.
    max_channels_per_connection: int = 200
    #: Bytes of message history and presence data kept across all channels. Over budget the oldest
    #: history (of any channel) is forgotten first; presence that does not fit is refused (42910).
    max_stored_bytes: int = 64 * 1024 * 1024
    #: Frames queued for one slow client before its transport is dropped.
    max_outbound_queue: int = 1000
    #: Encoded bytes queued for one slow client before its transport is dropped.
    max_outbound_bytes: int = 16 * 1024 * 1024
    #: Longest token (JWT or opaque) judged at all; longer ones are refused unread.
    max_token_length: int = 8192
    #: Opaque tokens issued by ``requestToken`` and nonces remembered; the oldest are forgotten first.
    max_issued_tokens: int = 10000
    #: Revocation entries remembered.
    max_revocations: int = 1000
    #: How long a dropped connection can be resumed (Ably ``connectionStateTtl``).
    connection_state_ttl_ms: int = 120_000
    #: Heartbeat cadence; clients drop a transport after this + 10 s of silence. A single write to a
    #: client blocked this long drops the transport too.
    max_idle_interval_ms: int = 15_000
    #: How long members of an abruptly dropped connection stay present, unless the client asked for
    #: another time with the ``remainPresentFor`` connection param (ms).
    presence_grace_ms: int = 15_000
    #: How long before expiry the AUTH prompt comes (Ably: about 30 s, RTN22 / ably-js
    #: ``auth.test.js`` "sandbox sends an auth protocol message 30 seconds before a token expires"). A token
    #: that lives no longer than this gets no prompt: DISCONNECTED 40142 at expiry, as on Ably.
    auth_lead_ms: int = 30_000
    #: Tolerated clock skew for a token's ``iat`` in the future; ``exp`` gets no grace.
    clock_skew_ms: int = 5_000
    #: Longest token lifetime accepted or issued.
    max_token_ttl_ms: int = 86_400_000
    #: Longest lifetime of a JWT of a key with revocable tokens (Ably: 1 h, ably-spec 2.4).
    max_revocable_token_ttl_ms: int = 3_600_000
    #: TokenRequest ``timestamp`` must be this close to sandbox time.
    token_request_window_ms: int = 120_000
    #: Grace before revoked tokens are cut off when ``allowReauthMargin`` is requested.
    reauth_margin_ms: int = 30_000
    #: Largest page of REST history / presence.
    max_page_size: int = 1000
    #: Send AUTH ahead of expiry. Off, clients only renew when DISCONNECTED 40142 arrives at expiry
    #: (what SDKs that ignore AUTH see); tests use it to exercise the expiry-and-resume path.
    auth_prompts: bool = True
    #: DEVIATION from Ably, off by default, for fast development only: prompt tokens that live no longer
    #: than ``auth_lead_ms`` too, at half their lifetime (lead ``min(auth_lead_ms, ttl / 2)``). Real Ably
    #: sends them no AUTH; they are renewed by reconnecting after DISCONNECTED 40142.
    short_token_prompts: bool = False

    def __post_init__(self) -> None:
        problems = [
            f"SandboxLimits.{f.name} must be a positive integer"
            for f in fields(self)
            if f.type == "int" and (not isinstance(getattr(self, f.name), int) or getattr(self, f.name) <= 0)
        ]
        if problems:
            raise ConfigError(problems)


class LimitError(AuthServerError):
    """A sandbox bound was hit; the message names the limit."""

    code = 42910
    status = 429
