"""Ably token params as an authUrl request carries them (params.py): which names count, repeats,
the two clientId spellings, ttl, capability and format. The HTTP-level refusals are in test_routes.py."""

from __future__ import annotations

import pytest

from authserver.core.capabilities import Capability
from authserver.core.issuance import TokenParams
from authserver.errors import BadRequestError, CapabilityError
from authserver.http.params import FORMATS, MAX_TTL_PARAM_MS, known_params, parse_token_params

# --- known_params: picking the token params out of a query or body --------------------------------


def test_only_token_params_are_kept_and_everything_else_is_ignored() -> None:
    pairs = [("rnd", "0.123"), ("ttl", "60000"), ("room", "lobby"), ("clientId", "alice"), ("format", "jwt")]
    assert known_params(pairs, source="query") == {"ttl": "60000", "clientId": "alice", "format": "jwt"}


def test_an_unknown_param_may_repeat() -> None:
    assert known_params([("rnd", "1"), ("rnd", "2")], source="query") == {}


@pytest.mark.parametrize("name", ["clientId", "client_id", "ttl", "capability", "format"])
def test_a_token_param_given_twice_is_refused_naming_it_and_where(name: str) -> None:
    with pytest.raises(BadRequestError) as refused:
        known_params([(name, "a"), (name, "a")], source="body")
    assert refused.value.code == 40000
    assert repr(name) in refused.value.message and "body" in refused.value.message


def test_the_two_spellings_of_client_id_are_two_params_not_a_repeat() -> None:
    assert known_params([("clientId", "alice"), ("client_id", "alice")], source="query") == {
        "clientId": "alice",
        "client_id": "alice",
    }


def test_param_names_are_case_sensitive() -> None:
    assert known_params([("TTL", "1"), ("ClientId", "x"), ("clientid", "y")], source="query") == {}


# --- parse_token_params ---------------------------------------------------------------------------


def test_no_params_mean_no_hints_and_no_format() -> None:
    params, fmt = parse_token_params({})
    assert params == TokenParams() and fmt is None


def test_every_param_is_read() -> None:
    params, fmt = parse_token_params(
        {"clientId": "alice", "ttl": "600000", "capability": '{"chat:*":["subscribe"]}', "format": "details"}
    )
    assert params == TokenParams("alice", 600_000, Capability.parse('{"chat:*":["subscribe"]}'))
    assert fmt == "details"


@pytest.mark.parametrize("spelling", ["clientId", "client_id"])
def test_either_spelling_gives_the_client_id(spelling: str) -> None:
    assert parse_token_params({spelling: "alice"})[0].client_id == "alice"


def test_both_spellings_agreeing_are_accepted_and_disagreeing_refused() -> None:
    assert parse_token_params({"clientId": "alice", "client_id": "alice"})[0].client_id == "alice"
    with pytest.raises(BadRequestError, match="disagree") as refused:
        parse_token_params({"clientId": "alice", "client_id": "bob"})
    assert refused.value.code == 40000


@pytest.mark.parametrize("seen", [{"clientId": ""}, {"client_id": ""}, {"clientId": "", "client_id": ""}])
def test_an_empty_client_id_is_refused_with_40012(seen: dict[str, str]) -> None:
    with pytest.raises(BadRequestError) as refused:
        parse_token_params(seen)
    assert (refused.value.code, refused.value.status) == (40012, 400)


def test_the_client_id_is_passed_on_as_given_for_the_issuer_to_judge() -> None:
    # Parsing does not decide who the caller is: "*" or another user's id is refused later (40102).
    assert parse_token_params({"clientId": "*"})[0].client_id == "*"


@pytest.mark.parametrize(
    ("raw", "ttl"),
    [("1", 1), ("60000", 60_000), ("000120000", 120_000), (str(MAX_TTL_PARAM_MS), MAX_TTL_PARAM_MS)],
)
def test_a_ttl_is_a_positive_whole_number_of_milliseconds(raw: str, ttl: int) -> None:
    assert parse_token_params({"ttl": raw})[0].ttl_ms == ttl


@pytest.mark.parametrize("raw", ["0", "000", str(MAX_TTL_PARAM_MS + 1), "1e5", "+5", "5\n", "9" * 16])
def test_a_ttl_out_of_range_or_not_plain_digits_is_refused_with_40003(raw: str) -> None:
    with pytest.raises(BadRequestError) as refused:
        parse_token_params({"ttl": raw})
    assert refused.value.code == 40003
    assert "ttl" in refused.value.message


@pytest.mark.parametrize("name", ["ttl", "capability"])
def test_an_empty_ttl_or_capability_counts_as_not_given(name: str) -> None:
    params, _ = parse_token_params({name: ""})
    assert params == TokenParams()


def test_a_capability_is_parsed_and_normalised() -> None:
    params, _ = parse_token_params({"capability": '{ "chat:*" : ["subscribe", "publish"] }'})
    assert params.capability is not None
    assert params.capability.to_json() == '{"chat:*":["publish","subscribe"]}'


@pytest.mark.parametrize("raw", ["{not json", '{"chat":["fly"]}', "[]", '{"a":["publish"],"a":["subscribe"]}'])
def test_a_capability_that_is_not_valid_capability_json_is_refused_with_40000(raw: str) -> None:
    with pytest.raises(CapabilityError) as refused:
        parse_token_params({"capability": raw})
    assert (refused.value.code, refused.value.status) == (40000, 400)


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_known_format_is_returned(fmt: str) -> None:
    params, found = parse_token_params({"format": fmt})
    assert found == fmt and params == TokenParams()


@pytest.mark.parametrize("fmt", ["", "JWT", "xml", "token"])
def test_any_other_format_is_refused_listing_the_known_ones(fmt: str) -> None:
    with pytest.raises(BadRequestError) as refused:
        parse_token_params({"format": fmt})
    assert refused.value.code == 40000
    assert all(name in refused.value.message for name in FORMATS)
