"""Who a connection is (spec 6.8 connect-time table) and which clientIds its messages may carry."""

from __future__ import annotations

import pytest

from authserver.core.capabilities import Capability
from authserver.core.keys import AblyKey
from authserver.errors import AuthServerError
from authserver.sandbox.grants import Actor, JudgedCredential, Keyring, identity_after_reauth, resolve_identity


def grant(kind: str = "jwt", client_id: str | None = None) -> JudgedCredential:
    assert kind in ("jwt", "token", "key")
    return JudgedCredential(kind, "app.key", Capability.all(), client_id, 0, None if kind == "key" else 1000)  # type: ignore[arg-type]


CONNECT_TABLE: list[tuple[str, JudgedCredential, str | None, Actor | int]] = [
    ("key, no clientId: may act as anyone", grant("key"), None, Actor(None, wildcard=True)),
    ("key with clientId", grant("key"), "x", Actor("x", wildcard=False)),
    ("anonymous token", grant(), None, Actor(None, wildcard=False)),
    ("anonymous token asking for a clientId", grant(), "x", 40102),
    ("identified token", grant(client_id="u"), None, Actor("u", wildcard=False)),
    ("identified token, same clientId", grant(client_id="u"), "u", Actor("u", wildcard=False)),
    ("identified token, other clientId", grant(client_id="u"), "x", 40102),
    ("wildcard token", grant(client_id="*"), None, Actor("*", wildcard=True)),
    ("wildcard token picking a clientId", grant(client_id="*"), "x", Actor("x", wildcard=False)),
    ("asking for the wildcard", grant(client_id="u"), "*", 40012),
]


@pytest.mark.parametrize(
    ("credential", "requested", "expected"), [r[1:] for r in CONNECT_TABLE], ids=[r[0] for r in CONNECT_TABLE]
)
def test_connect_time_client_id_resolution(
    credential: JudgedCredential, requested: str | None, expected: Actor | int
) -> None:
    if isinstance(expected, int):
        with pytest.raises(AuthServerError) as caught:
            resolve_identity(credential, requested)
        assert caught.value.code == expected
    else:
        assert resolve_identity(credential, requested) == expected


MESSAGE_TABLE: list[tuple[str, Actor, object, str | None | int]] = [
    ("identified, none given", Actor("u", False), None, "u"),
    ("identified, same", Actor("u", False), "u", "u"),
    ("identified, other", Actor("u", False), "x", 40012),
    ("wildcard, none given", Actor("*", True), None, None),
    ("wildcard, concrete", Actor("*", True), "x", "x"),
    ("wildcard, star", Actor("*", True), "*", 40012),
    ("anonymous, none", Actor(None, False), None, None),
    ("anonymous, some", Actor(None, False), "x", 40012),
    ("not a string", Actor(None, True), 5, 40012),
]


@pytest.mark.parametrize(
    ("identity", "given", "expected"), [r[1:] for r in MESSAGE_TABLE], ids=[r[0] for r in MESSAGE_TABLE]
)
def test_message_client_id_rules(identity: Actor, given: object, expected: str | None | int) -> None:
    if isinstance(expected, int):
        with pytest.raises(AuthServerError) as caught:
            identity.message_client_id(given)
        assert caught.value.code == expected
    else:
        assert identity.message_client_id(given) == expected


def test_reauth_keeps_a_concrete_client_id_and_refuses_another() -> None:
    alice = Actor("alice", wildcard=False)
    assert identity_after_reauth(alice, grant(client_id="alice")) == alice
    assert identity_after_reauth(alice, grant(client_id="*")) == alice
    with pytest.raises(AuthServerError) as caught:
        identity_after_reauth(alice, grant(client_id="bob"))
    assert caught.value.code == 40102
    with pytest.raises(AuthServerError):
        identity_after_reauth(alice, grant())


def test_reauth_may_identify_an_anonymous_connection() -> None:
    assert identity_after_reauth(Actor(None, False), grant(client_id="bob")) == Actor("bob", False)


class TestKeyring:
    keyring = Keyring([AblyKey("app.key", "s3cret")])

    def test_basic_auth_with_the_key_grants_the_keys_capability(self) -> None:
        granted = self.keyring.check_basic("app.key:s3cret", now_ms=5)
        assert (granted.kind, granted.key_name, granted.capability, granted.expires_ms) == (
            "key",
            "app.key",
            Capability.all(),
            None,
        )

    @pytest.mark.parametrize("text", ["app.key:wrong", "app.other:s3cret", "app.key", "", ":s3cret"])
    def test_wrong_keys_are_refused_40101(self, text: str) -> None:
        with pytest.raises(AuthServerError) as caught:
            self.keyring.check_basic(text, now_ms=5)
        assert caught.value.code == 40101

    def test_capabilities_for_unknown_keys_are_a_configuration_error(self) -> None:
        with pytest.raises(AuthServerError):
            Keyring([AblyKey("app.key", "s")], {"app.nokey": Capability.all()})
