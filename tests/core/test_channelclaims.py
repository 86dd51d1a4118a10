"""Per-channel JWT claims from the policy: ``channel_claims`` (``ably.channel.<resource>`` user claims) and
``publish_rate`` (``ably.limits.publish.perAttachment.maxRate.<resource>``): parsing, templating with
``{clientId}`` and upstream ``{claim:NAME}``, the worst-case JWT size check, and issuance into the JWT."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import jwt
import pytest

from authserver.core.callers import Identity
from authserver.core.capabilities import Capability
from authserver.core.channelclaims import (
    MAX_JWT_BYTES,
    MAX_REVOCATION_KEY_CHARS,
    MAX_UPSTREAM_CLAIM_CHARS,
    ClaimTemplateError,
    parse_channel_claims,
    worst_case_jwt_bytes,
)
from authserver.core.clientids import MAX_CLIENT_ID_CHARS
from authserver.core.issuance import Issuer, TokenParams, revocation_key_for_user
from authserver.core.keys import AblyKey
from authserver.core.policy import Policy, PolicyError, parse_policy
from authserver.errors import ForbiddenError
from authserver.identity.oidc.claims import carried_claims
from authserver.identity.sessions import session_revocation_key

from helpers import FakeClock

KEY = AblyKey("app.key", "a-secret-that-is-not-real-and-long-enough")
USER_RATE = "ably.limits.publish.perAttachment.maxRate."


def policy(**role: Any) -> Policy:
    return parse_policy({"default_role": "member", "roles": {"member": {"capability": {"*": ["*"]}, **role}}})


def issuer(p: Policy, *, revocable: bool = True) -> Issuer:
    return Issuer(
        keys=(KEY,),
        policy=p,
        key_capability=None,
        token_ttl=3600,
        token_max_ttl=3600,
        clock=FakeClock(1_700_000_000),
        revocable=revocable,
    )


def decoded(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, KEY.secret, algorithms=["HS256"], options={"verify_exp": False})
    return claims


# --- parsing -----------------------------------------------------------------------------------------


def test_a_role_declares_user_claims_and_publish_rates() -> None:
    role = policy(
        channel_claims={"chat:*": '{"role":"member"}', "private:{clientId}": "owner"},
        publish_rate={"chat:*": 5, "*": 0.1},
    ).role("member")
    assert dict(role.claims.user) == {"chat:*": '{"role":"member"}', "private:{clientId}": "owner"}
    assert dict(role.claims.publish_rate) == {"chat:*": 5, "*": 0.1}


def test_a_role_without_claims_has_none() -> None:
    assert not policy().role("member").claims


@pytest.mark.parametrize(
    ("user", "rates", "message"),
    [
        ({"chat:*": 7}, None, "channel_claims for 'chat:*' must be a string"),
        ({"chat:*": ["a"]}, None, "must be a string"),
        ({"chat:*": "x" * 1025}, None, "longer than 1024 characters"),
        ({"": "x"}, None, "empty resource name"),
        ({"chat room": "x"}, None, "whitespace or control characters"),
        ({"private:{user}": "x"}, None, "brace that is not {clientId}"),
        ({"chat:*": "{claim:password}"}, None, "quotes {claim:password}; upstream claims allowed: email"),
        ({"chat:*": "{claim:}"}, None, "quotes {claim:}"),
        ({"chat:*": "lone \ud800"}, None, "must be valid Unicode text"),  # a JSON policy can write "\ud800"
        (None, {"chat:*": 0}, "publish_rate for 'chat:*' must be a positive number"),
        (None, {"chat:*": -1}, "positive number"),
        (None, {"chat:*": float("inf")}, "positive number"),
        (None, {"chat:*": float("nan")}, "positive number"),
        (None, {"chat:*": True}, "positive number"),
        (None, {"chat:*": "5"}, "positive number"),
        (None, {"chat:*": 10**400}, "at most 1e+09"),  # a JSON policy's huge integer: no OverflowError
        (None, {"chat:*": 2e9}, "at most 1e+09"),  # the sandbox would take it for no limit at all
        (None, {"x" * 257: 1}, "longer than 256 characters"),
        (None, ["chat:*"], "publish_rate must be a table"),
        ("chat", None, "channel_claims must be a table"),
    ],
)
def test_unusable_claims_and_rates_are_refused_naming_the_table_and_resource(
    user: object, rates: object, message: str
) -> None:
    with pytest.raises(ClaimTemplateError, match=re.escape(message)):
        parse_channel_claims(user, rates)


def test_the_policy_refuses_bad_claims_naming_the_role() -> None:
    with pytest.raises(PolicyError, match="role 'member': publish_rate for 'chat:\\*' must be a positive number"):
        policy(publish_rate={"chat:*": 0})


def test_a_resource_that_grows_too_long_with_the_longest_client_id_is_refused() -> None:
    resource = "p:" + "x" * 200 + ":{clientId}"
    with pytest.raises(ClaimTemplateError, match="longer than 256 characters"):
        parse_channel_claims({resource: "x"}, None)


# --- templating --------------------------------------------------------------------------------------


def test_client_id_fills_resources_and_values_the_way_capabilities_are_templated() -> None:
    claims = policy(channel_claims={"private:{clientId}": '{"owner":"{clientId}"}'}).role("member").claims
    assert claims.for_caller("alice", {}) == {"ably.channel.private:alice": '{"owner":"alice"}'}


def test_other_braces_in_a_value_are_literal_json() -> None:
    claims = policy(channel_claims={"chat:*": '{"tags":{"mod":true}}'}).role("member").claims
    assert claims.for_caller("bob", {}) == {"ably.channel.chat:*": '{"tags":{"mod":true}}'}


def test_an_upstream_claim_is_inserted_json_escaped() -> None:
    claims = policy(channel_claims={"chat:*": '{"email":"{claim:email}"}'}).role("member").claims
    filled = claims.for_caller("bob", {"email": 'bob"@example.com'})
    assert json.loads(str(filled["ably.channel.chat:*"])) == {"email": 'bob"@example.com'}


@pytest.mark.parametrize("upstream", [{}, {"name": "Bob"}, {"email": "x" * (MAX_UPSTREAM_CLAIM_CHARS + 1)}])
def test_a_user_claim_quoting_a_missing_upstream_claim_is_left_out(upstream: dict[str, str]) -> None:
    """Omitted, not refused: a caller without an email still gets a token, without the half-filled claim."""
    claims = (
        policy(channel_claims={"chat:*": '{"email":"{claim:email}"}', "news": "reader"}, publish_rate={"chat:*": 2})
        .role("member")
        .claims
    )
    assert claims.for_caller("bob", upstream) == {"ably.channel.news": "reader", USER_RATE + "chat:*": 2}


def test_placeholders_are_filled_in_one_pass_so_a_filled_client_id_never_becomes_a_claim_placeholder() -> None:
    """``{claim:{clientId}}`` is literal text around the clientId: clientId "email" must not pull in the
    email (the worst-case size check, which uses a clientId of x's, would not have counted it)."""
    claims = policy(channel_claims={"chat:*": "{claim:{clientId}}"}).role("member").claims
    assert claims.for_caller("email", {"email": "e" * 100}) == {"ably.channel.chat:*": "{claim:email}"}


def test_an_upstream_value_is_not_filled_again() -> None:
    claims = policy(channel_claims={"chat:*": "{claim:name}"}).role("member").claims
    upstream = {"name": "{clientId} {claim:email}", "email": "e@x"}
    assert claims.for_caller("bob", upstream) == {"ably.channel.chat:*": "{clientId} {claim:email}"}


def test_a_literal_resource_wins_over_a_template_that_expands_to_it() -> None:
    claims = (
        policy(channel_claims={"private:{clientId}": "templated", "private:alice": "literal"}).role("member").claims
    )
    assert claims.for_caller("alice", {}) == {"ably.channel.private:alice": "literal"}


def test_claim_names_never_collide_with_reserved_x_ably_claims() -> None:
    claims = policy(channel_claims={"x-ably-capability": "x", "*": "y"}, publish_rate={"x-ably-clientId": 1})
    names = claims.role("member").claims.for_caller("alice", {})
    assert sorted(names) == ["ably.channel.*", "ably.channel.x-ably-capability", USER_RATE + "x-ably-clientId"]


def test_only_allow_listed_string_upstream_claims_of_bounded_length_are_carried() -> None:
    carried = carried_claims(
        {"sub": "u1", "email": "a@example.com", "groups": ["admin"], "phone": "123", "name": "n" * 129, "nickname": 5}
    )
    assert carried == (("email", "a@example.com"), ("sub", "u1"))


def test_an_upstream_claim_that_is_not_valid_unicode_is_not_carried() -> None:
    """JSON lets an identity provider send a lone surrogate; as a claim value it could not reach a msgpack client."""
    assert carried_claims({"sub": "u1", "name": "lone \ud800"}) == (("sub", "u1"),)


# --- the worst-case JWT size -------------------------------------------------------------------------


def test_every_revocation_key_fits_the_size_checks_allowance() -> None:
    assert len(revocation_key_for_user("x" * MAX_CLIENT_ID_CHARS)) <= MAX_REVOCATION_KEY_CHARS
    assert len(session_revocation_key("f" * 64)) <= MAX_REVOCATION_KEY_CHARS


def test_the_worst_case_size_bounds_every_real_token_of_the_role() -> None:
    role_policy = policy(
        channel_claims={"chat:*": '{"e":"{claim:email}","n":"{claim:name}"}', "private:{clientId}": "{clientId}"},
        publish_rate={"*": 1},
    )
    role = role_policy.role("member")
    client_id = "y" * MAX_CLIENT_ID_CHARS
    widest = "\U0001f600" * MAX_UPSTREAM_CLAIM_CHARS
    identity = Identity(
        subject="s", client_id=client_id, role="member", upstream=(("email", widest), ("name", '"' * 128))
    )
    token = issuer(role_policy).jwt(identity, TokenParams()).token
    assert len(token) <= worst_case_jwt_bytes(role.capability_for(client_id).to_json(), role.claims)


def test_the_worst_case_counts_a_literal_resource_that_the_probe_client_id_would_merge_with_a_template() -> None:
    """For clientId "x"*64 ``p:{clientId}`` and the literal ``p:xxx...`` are one claim; for everyone else two."""
    role_policy = policy(channel_claims={"p:{clientId}": "t" * 1000, "p:" + "x" * MAX_CLIENT_ID_CHARS: "l" * 1000})
    role = role_policy.role("member")
    token = issuer(role_policy).jwt(Identity("a", "alice", "member"), TokenParams()).token
    assert len(decoded(token)) == 7  # iat, exp, capability, clientId, revocation key and both claims
    assert len(token) <= worst_case_jwt_bytes(role.capability_for("alice").to_json(), role.claims)


def test_a_role_whose_tokens_could_exceed_8_kib_is_refused_at_load_naming_role_and_size() -> None:
    many = {f"room-{i}:{{clientId}}": '{"email":"{claim:email}"}' for i in range(4)}
    with pytest.raises(PolicyError) as caught:
        policy(channel_claims=many)
    message = caught.value.message
    assert message.startswith("role 'member': its JWTs could be ")
    size = int(message.split("could be ")[1].split(" bytes")[0])
    assert size > MAX_JWT_BYTES
    assert f"over Ably's {MAX_JWT_BYTES}-byte guidance" in message


def test_a_large_capability_alone_can_exceed_the_size() -> None:
    capability = {f"channel-{i:03}-{'x' * 40}": ["publish"] for i in range(150)}
    with pytest.raises(PolicyError, match="role 'member': its JWTs could be"):
        parse_policy({"default_role": "member", "roles": {"member": {"capability": capability}}})


def test_a_requested_capability_that_would_make_the_jwt_exceed_8_kib_is_refused_for_good() -> None:
    """The load-time check covers the role's own capability; a request can list more resources than the
    role (``*`` intersected with 150 named channels is those 150 channels), so issuance checks the JWT."""
    service = issuer(policy(channel_claims={"*": "c"}))
    alice = Identity("a", "alice", "member")
    large = Capability.parse({f"channel-{i:03}-{'x' * 40}": ["publish"] for i in range(150)})
    with pytest.raises(ForbiddenError, match=r"the requested capability makes the JWT \d+ bytes, over Ably's 8192"):
        service.jwt(alice, TokenParams(capability=large))
    small = Capability.parse({f"channel-{i:03}": ["publish"] for i in range(10)})
    assert len(service.jwt(alice, TokenParams(capability=small)).token) <= MAX_JWT_BYTES


def test_a_role_just_under_the_size_is_accepted() -> None:
    few = {f"room-{i}:{{clientId}}": '{"email":"{claim:email}"}' for i in range(2)}
    role = policy(channel_claims=few).role("member")
    assert worst_case_jwt_bytes(role.capability_for("x" * 64).to_json(), role.claims) <= MAX_JWT_BYTES


# --- issuance ----------------------------------------------------------------------------------------


def test_issued_jwts_carry_the_roles_user_claims_and_publish_rates() -> None:
    p = policy(
        channel_claims={"chat:*": '{"role":"member"}', "private:{clientId}": "owner"}, publish_rate={"chat:*": 0.5}
    )
    identity = Identity(subject="alice", client_id="alice", role="member", revocation_key="s:1")
    claims = decoded(issuer(p).jwt(identity, TokenParams()).token)
    assert claims["ably.channel.chat:*"] == '{"role":"member"}'
    assert claims["ably.channel.private:alice"] == "owner"
    assert claims[USER_RATE + "chat:*"] == 0.5
    assert claims["x-ably-revocation-key"] == "s:1"
    assert claims["x-ably-clientId"] == "alice"


def test_claims_are_issued_without_revocation_keys_too() -> None:
    p = policy(publish_rate={"*": 3})
    claims = decoded(issuer(p, revocable=False).jwt(Identity("a", "alice", "member"), TokenParams()).token)
    assert claims[USER_RATE + "*"] == 3 and "x-ably-revocation-key" not in claims


def test_every_claim_goes_in_whatever_capability_the_client_asks_for() -> None:
    """Claims are not filtered by the requested capability: one outside it is inert, and simpler to reason about."""
    p = policy(channel_claims={"chat:*": "c", "news": "n"})
    token = issuer(p).jwt(Identity("a", "alice", "member"), TokenParams(capability=Capability.parse('{"news":["*"]}')))
    claims = decoded(token.token)
    assert (claims["ably.channel.chat:*"], claims["ably.channel.news"]) == ("c", "n")


def test_an_upstream_identity_claim_fills_the_user_claim() -> None:
    p = policy(channel_claims={"chat:*": '{"email":"{claim:email}"}'})
    upstream_identity = Identity("iss#u1", "u1", "member", upstream=(("email", "u1@example.com"),))
    claims = decoded(issuer(p).jwt(upstream_identity, TokenParams()).token)
    assert json.loads(claims["ably.channel.chat:*"]) == {"email": "u1@example.com"}
    account = decoded(issuer(p).jwt(Identity("u1", "u1", "member"), TokenParams()).token)
    assert "ably.channel.chat:*" not in account


def test_two_upstream_identities_of_one_client_id_get_their_own_claims() -> None:
    p = policy(channel_claims={"chat:*": "{claim:email}"})
    service = issuer(p)
    first = decoded(service.jwt(Identity("i#1", "u1", "member", upstream=(("email", "a@x"),)), TokenParams()).token)
    second = decoded(service.jwt(Identity("i#1", "u1", "member", upstream=(("email", "b@x"),)), TokenParams()).token)
    assert (first["ably.channel.chat:*"], second["ably.channel.chat:*"]) == ("a@x", "b@x")


def test_a_token_request_is_refused_for_a_role_with_claims_because_only_a_jwt_carries_them() -> None:
    p = policy(publish_rate={"chat:*": 1})
    with pytest.raises(ForbiddenError, match="only a JWT carries"):
        issuer(p).token_request(Identity("a", "alice", "member"), TokenParams())


def test_a_token_request_is_still_issued_for_a_role_without_claims() -> None:
    request = issuer(policy()).token_request(Identity("a", "alice", "member"), TokenParams())
    assert request.client_id == "alice"


def test_an_issued_payload_is_the_compact_json_of_its_claims_each_claim_once() -> None:
    p = policy(channel_claims={"chat:*": 'quoted "ü"'}, publish_rate={"chat:*": 0.5, "*": 3})
    token = issuer(p).jwt(Identity("a", "alice", "member", revocation_key="s:1"), TokenParams()).token
    segment = token.split(".")[1]
    text = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode("ascii")
    assert text == json.dumps(json.loads(text), separators=(",", ":"))  # a repeated name would be lost
    assert list(json.loads(text))[-1] == "x-ably-revocation-key"
