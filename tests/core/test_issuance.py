"""The token decision (issuance.py), called directly: who asked, what their role and the key allow,
capability intersection, TTL clamping, the clientId rules and refusals with their Ably codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from authserver.core.callers import Identity
from authserver.core.capabilities import Capability
from authserver.core.issuance import (
    CLIENT_TTL_FLOOR_MS,
    Allowance,
    Issuer,
    TokenParams,
    revocation_key_for_user,
)
from authserver.core.keys import parse_api_key
from authserver.core.policy import load_policy, parse_policy
from authserver.core.tokenrequests import compute_mac
from authserver.errors import ClientIdError, ForbiddenError

from helpers import API_KEY, FakeClock

KEY = parse_api_key(API_KEY)
NEXT_KEY = parse_api_key("appId.nextKey:another-secret-that-is-long-enough-for-hs256")
ALICE = Identity(subject="alice", client_id="alice", role="user")
ROLE_CAPABILITY = {
    "announcements": ["history", "subscribe"],
    "chat:*": ["history", "presence", "publish", "subscribe"],
    "private:alice": ["*"],
}

IssuerFactory = Callable[..., Issuer]


@pytest.fixture
def make_issuer(clock: FakeClock) -> IssuerFactory:
    """An issuer on the built-in policy and the fake clock; any constructor argument may be overridden."""

    def make(**overrides: Any) -> Issuer:
        args: dict[str, Any] = {
            "keys": (KEY,),
            "policy": load_policy(None),
            "key_capability": None,
            "token_ttl": 3600,
            "token_max_ttl": 86400,
            "clock": clock,
        }
        args.update(overrides)
        return Issuer(**args)

    return make


def claims_of(token: str) -> dict[str, Any]:
    # The fake clock is far from the wall clock: the signature is checked, the times are not.
    decoded: dict[str, Any] = jwt.decode(
        token, KEY.secret, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False}
    )
    return decoded


def capability(text: str) -> Capability:
    return Capability.parse(text)


# --- construction ---------------------------------------------------------------------------------


def test_an_issuer_without_keys_is_refused(make_issuer: IssuerFactory) -> None:
    with pytest.raises(ValueError, match="at least one key"):
        make_issuer(keys=())


def test_the_first_of_several_keys_signs(make_issuer: IssuerFactory) -> None:
    issuer = make_issuer(keys=(KEY, NEXT_KEY))
    issued = issuer.jwt(ALICE, TokenParams())
    assert jwt.get_unverified_header(issued.token)["kid"] == KEY.name == issued.key_name
    claims_of(issued.token)  # verifies with the first key's secret


@pytest.mark.parametrize(
    ("revocable", "margin", "token_ttl", "token_max_ttl", "default_ms", "max_ms"),
    [
        (False, 0, 3600, 86400, 3_600_000, 86_400_000),
        (False, 0, 90_000, 200_000, 86_400_000, 86_400_000),  # settings over Ably's 24 h cap are cut to it
        (False, 5, 3600, 86400, 3_600_000, 86_395_000),  # the cap includes the back-dating of iat
        (True, 5, 7200, 86400, 3_595_000, 3_595_000),  # revocable tokens live at most 1 h
        (False, 0, 7200, 600, 600_000, 600_000),  # TOKEN_TTL above TOKEN_MAX_TTL is cut to it
    ],
)
def test_the_service_limits_are_the_settings_cut_to_ablys_lifetime_caps(
    make_issuer: IssuerFactory,
    revocable: bool,
    margin: int,
    token_ttl: int,
    token_max_ttl: int,
    default_ms: int,
    max_ms: int,
) -> None:
    issuer = make_issuer(token_ttl=token_ttl, token_max_ttl=token_max_ttl, revocable=revocable, iat_margin=margin)
    assert (issuer.token_ttl_ms, issuer.token_max_ttl_ms) == (default_ms, max_ms)


# --- what the caller's role allows ----------------------------------------------------------------


def test_with_no_params_the_grant_is_the_roles_capability_for_the_caller_and_the_default_ttl(
    make_issuer: IssuerFactory,
) -> None:
    grant = make_issuer(token_ttl=600).grant(ALICE, TokenParams())
    assert grant.client_id == "alice"
    assert json.loads(grant.capability) == ROLE_CAPABILITY
    assert grant.ttl_ms == 600_000
    assert dict(grant.claims) == {} and grant.claims_json == ""


def test_the_allowance_is_the_roles_capability_intersected_with_the_keys(make_issuer: IssuerFactory) -> None:
    issuer = make_issuer(key_capability=capability('{"chat:*":["subscribe","publish"],"private:*":["presence"]}'))
    allowance = issuer.allowance(ALICE)
    assert json.loads(allowance.capability_json) == {
        "chat:*": ["publish", "subscribe"],
        "private:alice": ["presence"],
    }
    assert allowance.capability_json == allowance.capability.to_json()


def test_a_role_that_shares_nothing_with_the_key_is_refused_with_40160(make_issuer: IssuerFactory) -> None:
    issuer = make_issuer(key_capability=capability('{"billing":["publish"]}'))
    with pytest.raises(ForbiddenError) as refused:
        issuer.grant(ALICE, TokenParams())
    assert (refused.value.code, refused.value.status) == (40160, 403)
    assert "'user'" in refused.value.message


def test_a_role_the_policy_does_not_define_is_a_final_refusal(make_issuer: IssuerFactory) -> None:
    ghost = Identity(subject="alice", client_id="alice", role="ghost")
    with pytest.raises(ForbiddenError) as refused:
        make_issuer().grant(ghost, TokenParams())
    assert (refused.value.code, refused.value.status) == (40300, 403)
    assert "ghost" in refused.value.message


@pytest.mark.parametrize("role", ["user", "admin"])
@pytest.mark.parametrize("client_id", ["*", "a:b", "private:*", "[meta]x", " alice", "x" * 65])
def test_an_identity_whose_client_id_is_outside_the_safe_set_gets_no_token_whatever_its_role(
    make_issuer: IssuerFactory, role: str, client_id: str
) -> None:
    # Identities come from the server side, but the issuer checks again before it signs anything.
    with pytest.raises(ClientIdError) as refused:
        make_issuer().jwt(Identity(subject="x", client_id=client_id, role=role), TokenParams())
    assert refused.value.code == 40012


def test_the_allowance_is_worked_out_once_per_role_and_client_id(make_issuer: IssuerFactory) -> None:
    issuer = make_issuer()
    first = issuer.allowance(ALICE)
    again = issuer.allowance(Identity(subject="other-session", client_id="alice", role="user", revocation_key="s:2"))
    assert again is first
    bob = issuer.allowance(Identity(subject="bob", client_id="bob", role="user"))
    assert bob is not first and "private:bob" in bob.capability.resources()
    assert issuer.allowance(Identity(subject="alice", client_id="alice", role="admin")) is not first


# --- what the caller asked for --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "granted"),
    [
        ('{"*":["*"]}', ROLE_CAPABILITY),  # every channel: the role's own capability
        ('{"chat:*":["subscribe"]}', {"chat:*": ["subscribe"]}),
        ('{"chat:lobby":["subscribe","push-admin"]}', {"chat:lobby": ["subscribe"]}),
        ('{"private:alice":["publish"],"private:bob":["publish"]}', {"private:alice": ["publish"]}),
        ('{"[*]*":["*"]}', ROLE_CAPABILITY),
        ('{"announcements":["*"]}', {"announcements": ["history", "subscribe"]}),
    ],
)
def test_a_requested_capability_is_narrowed_to_what_the_role_allows(
    make_issuer: IssuerFactory, asked: str, granted: dict[str, list[str]]
) -> None:
    grant = make_issuer().grant(ALICE, TokenParams(capability=capability(asked)))
    assert json.loads(grant.capability) == granted


def test_a_requested_capability_the_caller_may_never_have_is_refused_with_40160(make_issuer: IssuerFactory) -> None:
    with pytest.raises(ForbiddenError) as refused:
        make_issuer().grant(ALICE, TokenParams(capability=capability('{"private:bob":["subscribe"]}')))
    assert (refused.value.code, refused.value.status) == (40160, 403)


def test_the_callers_own_client_id_may_be_named(make_issuer: IssuerFactory) -> None:
    assert make_issuer().grant(ALICE, TokenParams(client_id="alice")).client_id == "alice"


@pytest.mark.parametrize("client_id", ["bob", "*", "Alice", "alice "])
def test_any_other_client_id_is_refused_with_40102(make_issuer: IssuerFactory, client_id: str) -> None:
    with pytest.raises(ForbiddenError) as refused:
        make_issuer().grant(ALICE, TokenParams(client_id=client_id))
    assert (refused.value.code, refused.value.status) == (40102, 403)


def test_the_refused_client_id_is_echoed_cut_short(make_issuer: IssuerFactory) -> None:
    with pytest.raises(ForbiddenError) as refused:
        make_issuer().grant(ALICE, TokenParams(client_id="m" * 1000))
    assert "m" * 64 in refused.value.message and "m" * 65 not in refused.value.message


# --- TTL ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("default_ms", "max_ms", "requested", "expected"),
    [
        (3_600_000, 3_600_000, None, 3_600_000),  # nothing asked: the default
        (3_600_000, 3_600_000, 600_000, 600_000),
        (3_600_000, 3_600_000, 1, CLIENT_TTL_FLOOR_MS),  # no refresh storm: at least 60 s
        (3_600_000, 3_600_000, 59_999, CLIENT_TTL_FLOOR_MS),
        (5_000, 3_600_000, 1, 5_000),  # ...unless the operator's own default is shorter
        (3_600_000, 3_600_000, 10**12, 3_600_000),  # never beyond the most
        (30_000, 30_000, 10**12, 30_000),
    ],
)
def test_a_requested_ttl_is_clamped_between_the_floor_and_the_most(
    default_ms: int, max_ms: int, requested: int | None, expected: int
) -> None:
    allowance = Allowance(Capability.all(), Capability.all().to_json(), default_ms, max_ms)
    assert allowance.ttl(requested) == expected


@pytest.mark.parametrize(
    ("role", "requested", "expected"),
    [
        ("user", 86_400_000, 3_600_000),  # the built-in user role: max_ttl 3600 s
        ("admin", 86_400_000, 7_200_000),  # admin allows 24 h, the service 2 h
        ("admin", None, 1_800_000),
    ],
)
def test_the_ttl_is_limited_by_the_role_and_by_the_service(
    make_issuer: IssuerFactory, role: str, requested: int | None, expected: int
) -> None:
    issuer = make_issuer(token_ttl=1800, token_max_ttl=7200)
    identity = Identity(subject="alice", client_id="alice", role=role)
    assert issuer.grant(identity, TokenParams(ttl_ms=requested)).ttl_ms == expected


def test_a_role_with_a_max_ttl_under_the_service_default_defaults_to_it(make_issuer: IssuerFactory) -> None:
    policy = parse_policy({"roles": {"user": {"max_ttl": 120, "capability": {"chat:*": ["subscribe"]}}}})
    issuer = make_issuer(policy=policy, token_ttl=3600)
    assert issuer.grant(ALICE, TokenParams()).ttl_ms == 120_000


# --- the JWT --------------------------------------------------------------------------------------


def test_the_jwt_carries_the_grant_with_iat_now_and_exp_after_the_ttl(
    make_issuer: IssuerFactory, clock: FakeClock
) -> None:
    clock.now = 1_800_000_000.9
    issued = make_issuer().jwt(ALICE, TokenParams(ttl_ms=600_000, capability=capability('{"chat:a":["publish"]}')))
    claims = claims_of(issued.token)
    assert claims == {
        "iat": 1_800_000_000,
        "exp": 1_800_000_600,
        "x-ably-capability": '{"chat:a":["publish"]}',
        "x-ably-clientId": "alice",
    }
    assert (issued.issued_ms, issued.expires_ms) == (1_800_000_000_000, 1_800_000_600_000)
    assert (issued.capability, issued.client_id) == (claims["x-ably-capability"], "alice")


def test_a_ttl_of_part_seconds_gives_a_jwt_of_whole_seconds(make_issuer: IssuerFactory) -> None:
    issued = make_issuer().jwt(ALICE, TokenParams(ttl_ms=90_999))
    claims = claims_of(issued.token)
    assert claims["exp"] - claims["iat"] == 90


def test_the_refusals_of_grant_hold_for_jwts_too(make_issuer: IssuerFactory) -> None:
    issuer = make_issuer()
    with pytest.raises(ForbiddenError) as other:
        issuer.jwt(ALICE, TokenParams(client_id="bob"))
    assert other.value.code == 40102
    with pytest.raises(ForbiddenError) as never:
        issuer.jwt(ALICE, TokenParams(capability=capability('{"admin":["publish"]}')))
    assert never.value.code == 40160


# --- the TokenRequest -----------------------------------------------------------------------------


def test_a_token_request_is_signed_for_the_grant_with_the_exact_ttl_and_the_clock_in_ms(
    make_issuer: IssuerFactory, clock: FakeClock
) -> None:
    clock.now = 1_800_000_000.25
    request = make_issuer().token_request(ALICE, TokenParams(ttl_ms=90_500))
    assert (request.key_name, request.client_id, request.ttl, request.timestamp) == (
        KEY.name,
        "alice",
        90_500,
        1_800_000_000_250,
    )
    assert json.loads(request.capability) == ROLE_CAPABILITY
    assert request.mac == compute_mac(
        key_name=KEY.name,
        ttl=90_500,
        capability=request.capability,
        client_id="alice",
        timestamp=request.timestamp,
        nonce=request.nonce,
        secret=KEY.secret,
    )


def test_every_token_request_has_a_fresh_nonce(make_issuer: IssuerFactory) -> None:
    issuer = make_issuer()
    nonces = {issuer.token_request(ALICE, TokenParams()).nonce for _ in range(5)}
    assert len(nonces) == 5


def test_a_token_request_for_another_client_id_is_refused_with_40102(make_issuer: IssuerFactory) -> None:
    with pytest.raises(ForbiddenError) as refused:
        make_issuer().token_request(ALICE, TokenParams(client_id="bob"))
    assert refused.value.code == 40102


def test_a_user_outside_any_session_has_a_revocation_key_of_its_own() -> None:
    assert revocation_key_for_user("alice") == "u:alice"
    assert revocation_key_for_user("alice") != revocation_key_for_user("alice2")
