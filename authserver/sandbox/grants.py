"""What a credential grants (a :class:`JudgedCredential`), who a connection is (an :class:`Actor`) and the keys
the sandbox knows (the :class:`Keyring`)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from authserver.core.capabilities import Capability
from authserver.core.channelclaims import value_for
from authserver.core.keys import AblyKey
from authserver.errors import ClientIdError, ConfigError, NotAuthenticatedError, TokenError

CredentialKind = Literal["jwt", "token", "key"]


@dataclass(frozen=True)
class TokenClaims:
    """A JWT's per-channel claims: user claims (``ably.channel.<resource>``) and publish rates
    (``ably.limits.publish.perAttachment.maxRate.<resource>``), as resource pattern -> value.

    For a channel the most specific matching resource wins (:func:`~authserver.core.capabilities.specificity`:
    the exact name, then more literal segments, then a concrete qualifier, then more segments).
    """

    user: Mapping[str, str] = field(default_factory=dict)
    publish_rate: Mapping[str, float] = field(default_factory=dict)

    def user_claim(self, channel: str) -> str | None:
        return value_for(self.user, channel)

    def rate(self, channel: str) -> float | None:
        """Messages per second allowed on each attachment to ``channel``, or None (no limit)."""
        return value_for(self.publish_rate, channel)


NO_CLAIMS = TokenClaims()


@dataclass(frozen=True)
class JudgedCredential:
    """A judged credential: the effective capability (token ∩ key) and the identity it carries.

    ``client_id`` is the token's clientId: ``None`` (anonymous), ``"*"`` (wildcard) or concrete.
    ``expires_ms`` is ``None`` for basic auth with the key itself.
    """

    kind: CredentialKind
    key_name: str
    capability: Capability
    client_id: str | None
    issued_ms: int
    expires_ms: int | None
    revocation_key: str | None = None
    #: The JWT's channel claims (JWT only: native tokens and keys have none); an AUTH replaces them.
    claims: TokenClaims = field(default=NO_CLAIMS, compare=False)

    @property
    def app_id(self) -> str:
        return self.key_name.partition(".")[0]

    @property
    def ttl_ms(self) -> int | None:
        return None if self.expires_ms is None else self.expires_ms - self.issued_ms


@dataclass(frozen=True)
class Actor:
    """Who a connection or REST request acts as.

    ``client_id`` is what CONNECTED advertises: concrete, ``"*"`` for a wildcard token, or ``None``.
    ``wildcard`` is true for ``"*"`` tokens and for basic auth without a clientId: such callers may
    put any concrete clientId on their messages.
    """

    client_id: str | None
    wildcard: bool

    @property
    def identified(self) -> bool:
        return self.client_id is not None and self.client_id != "*"

    def message_client_id(self, requested: object) -> str | None:
        """The clientId a message or presence message carries (spec 6.6 message clientId rules).

        :raises ClientIdError: 40012 when the message's clientId is not permitted.
        """
        if requested is not None and (not isinstance(requested, str) or not requested or requested == "*"):
            raise ClientIdError("message clientId must be a non-empty string other than '*'")
        if self.identified:
            if requested is not None and requested != self.client_id:
                raise ClientIdError("message clientId does not match the connection's clientId")
            return self.client_id
        if self.wildcard:
            return requested
        if requested is not None:
            raise ClientIdError("an anonymous connection may not publish with a clientId")
        return None


def denied(channel: str, operation: str) -> TokenError:
    """40160: the capability does not allow ``operation`` on ``channel``."""
    return TokenError(f"Channel denied access based on given capability ({operation} on {channel!r})", code=40160)


def require(grant: JudgedCredential, channel: str, operation: str) -> None:
    """:raises TokenError: 40160 when ``grant``'s capability does not allow ``operation`` on ``channel``."""
    if not grant.capability.allows(channel, operation):
        raise denied(channel, operation)


def resolve_identity(grant: JudgedCredential, requested: str | None) -> Actor:
    """Combine a credential with the ``clientId`` the client asked for (spec 6.8 connect-time table).

    :raises ClientIdError: 40012 for an empty or ``"*"`` requested clientId.
    :raises TokenError: 40102 when the token's clientId and the requested one disagree.
    """
    if requested is not None and (not requested or requested == "*"):
        raise ClientIdError("clientId must be a non-empty string other than '*'")
    if grant.kind == "key":
        return Actor(requested, wildcard=requested is None)
    if grant.client_id == "*":
        return Actor(requested or "*", wildcard=requested is None)
    if requested is not None and requested != grant.client_id:
        raise TokenError("Invalid clientId for credentials", code=40102, status=401)
    return Actor(grant.client_id, wildcard=False)


def identity_after_reauth(current: Actor, grant: JudgedCredential) -> Actor:
    """The identity of a live connection once it presents ``grant`` in an AUTH message.

    A concrete clientId never changes (a wildcard token may keep it); an anonymous or wildcard
    connection may become identified.

    :raises TokenError: 40102 "Mismatched clientId for existing connection".
    """
    if current.identified:
        if grant.kind == "key" or grant.client_id in (current.client_id, "*"):
            return current
        raise TokenError("Mismatched clientId for existing connection", code=40102, status=401)
    return resolve_identity(grant, None)


class Keyring:
    """The API keys the sandbox accepts, the capability of each (absent = unrestricted), and whether it
    has revocable tokens enabled (every key does unless named in ``non_revocable``, as Ably's test apps
    have a key with ``revocableTokens``)."""

    def __init__(
        self,
        keys: Sequence[AblyKey],
        capabilities: Mapping[str, Capability] | None = None,
        *,
        non_revocable: Sequence[str] = (),
    ) -> None:
        self._keys = {key.name: key for key in keys}
        self._capabilities = dict(capabilities or {})
        self._non_revocable = frozenset(non_revocable)
        unknown = sorted((set(self._capabilities) | self._non_revocable) - set(self._keys))
        if unknown:
            raise ConfigError([f"key option given for unknown key name {name!r}" for name in unknown])

    def __contains__(self, key_name: object) -> bool:
        return key_name in self._keys

    def get(self, key_name: str) -> AblyKey | None:
        return self._keys.get(key_name)

    def has_app(self, app_id: str) -> bool:
        """Whether some key belongs to the app ``app_id`` (the part of a key name before the dot)."""
        return any(key.app_id == app_id for key in self._keys.values())

    def revocable(self, key_name: str) -> bool:
        """Whether the key has revocable tokens: revokeTokens works, its tokens live at most 1 h."""
        return key_name in self._keys and key_name not in self._non_revocable

    def capability(self, key_name: str) -> Capability:
        return self._capabilities.get(key_name) or Capability.all()

    def check_basic(self, key_text: str, *, now_ms: int) -> JudgedCredential:
        """Judge ``appId.keyId:secret`` presented as basic auth (or ``key=`` on the WebSocket URL).

        :raises NotAuthenticatedError: 40101 for a malformed, unknown or wrong key.
        """
        name, sep, secret = key_text.partition(":")
        key = self._keys.get(name) if sep else None
        # NOTE: compare against a dummy when the key is unknown so timing does not reveal key names.
        expected = key.secret if key is not None else "\x00" * max(len(secret), 1)
        if not hmac.compare_digest(secret.encode("utf-8"), expected.encode("utf-8")) or key is None:
            raise NotAuthenticatedError("Invalid credentials: unknown key or wrong key secret")
        return JudgedCredential("key", name, self.capability(name), None, now_ms, None)
