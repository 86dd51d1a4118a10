"""Clock-safe issuance (issue 10): ``iat`` back-dated by a margin, ``exp - iat`` within Ably's caps (24 h;
1 h with revocable tokens), the session's ``x-ably-revocation-key``, and the revocation cutoff that
leaves a user who comes straight back alone."""

from __future__ import annotations

import jwt
import pytest

from authserver.core.callers import Identity
from authserver.core.issuance import Issuer, TokenParams
from authserver.core.keys import AblyKey
from authserver.core.policy import load_policy

from helpers import FakeClock

KEY = AblyKey("app.key", "a-secret-that-is-not-real-and-long-enough")
ALICE = Identity(subject="alice", client_id="alice", role="admin", revocation_key="s:abc")


def issuer(clock: FakeClock, *, revocable: bool, margin: int, ttl: int = 3600, max_ttl: int = 86400) -> Issuer:
    return Issuer(
        keys=(KEY,),
        policy=load_policy(None),
        key_capability=None,
        token_ttl=ttl,
        token_max_ttl=max_ttl,
        clock=clock,
        revocable=revocable,
        iat_margin=margin,
    )


def claims(token: str) -> dict[str, object]:
    decoded: dict[str, object] = jwt.decode(
        token, KEY.secret, algorithms=["HS256"], options={"verify_iat": False, "verify_exp": False}
    )
    return decoded


@pytest.mark.parametrize(
    ("revocable", "requested", "lifetime"),
    [
        (False, 86_400_000, 86_400),  # exp - iat never above 24 h, margin included
        (True, 86_400_000, 3_600),  # nor above 1 h with revocable tokens
        (True, 600_000, 605),  # under the cap: the TTL from now, plus the margin
    ],
)
def test_iat_is_back_dated_and_the_lifetime_stays_within_ablys_caps(
    clock: FakeClock, revocable: bool, requested: int, lifetime: int
) -> None:
    clock.now = 1_800_000_000.6
    issued = issuer(clock, revocable=revocable, margin=5).jwt(ALICE, TokenParams(ttl_ms=requested))
    found = claims(issued.token)
    assert found["iat"] == 1_800_000_000 - 5
    assert found["exp"] - found["iat"] == lifetime  # type: ignore[operator]
    assert issued.issued_ms == 1_799_999_995_000  # TokenDetails tell the same times


def test_a_revocable_token_names_its_session_and_an_unrevocable_one_nothing(clock: FakeClock) -> None:
    revocable, plain = issuer(clock, revocable=True, margin=5), issuer(clock, revocable=False, margin=5)
    assert claims(revocable.jwt(ALICE, TokenParams()).token)["x-ably-revocation-key"] == "s:abc"
    outside = Identity(subject="bob", client_id="bob", role="user")  # e.g. `authserver token`
    assert claims(revocable.jwt(outside, TokenParams()).token)["x-ably-revocation-key"] == "u:bob"
    assert "x-ably-revocation-key" not in claims(plain.jwt(ALICE, TokenParams()).token)


def test_the_cutoff_covers_this_second_and_a_token_minted_after_it_is_out_of_reach(clock: FakeClock) -> None:
    clock.now = 1_800_000_000.2
    signer = issuer(clock, revocable=True, margin=5)
    before = claims(signer.jwt(ALICE, TokenParams()).token)
    cutoff = signer.revocation_cutoff(["clientId:alice"])
    assert cutoff == (1_800_000_000 - 5 + 1) * 1000
    assert before["iat"] * 1000 < cutoff  # type: ignore[operator]  # revoked
    clock.advance(0.3)  # the same second: alice logs straight back in
    after = claims(signer.jwt(ALICE, TokenParams()).token)
    assert after["iat"] * 1000 >= cutoff  # type: ignore[operator]  # not revoked
    bob = claims(signer.jwt(Identity(subject="bob", client_id="bob", role="user"), TokenParams()).token)
    assert bob["iat"] == 1_800_000_000 - 5  # other users keep the plain margin
    clock.advance(1.0)
    assert claims(signer.jwt(ALICE, TokenParams()).token)["iat"] == 1_800_000_001 - 5


def test_the_cutoff_is_never_in_the_future_without_a_margin() -> None:
    assert Issuer.issued_before_at(1_800_000_000.25, 0) == 1_800_000_000_250
