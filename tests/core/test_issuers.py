"""What an upstream OpenID Connect provider is trusted for (identity/oidc/upstream.py): URL rules,
the validated issuer with its defaults, and one ``[[issuers]]`` table of the policy file. How
``check`` reports these problems is in tests/oidc/test_check.py."""

from __future__ import annotations

from typing import Any

import pytest

from authserver.core.issuers import (
    DEFAULT_ALGORITHMS,
    DEFAULT_LEEWAY,
    KEY_TYPES,
    MAX_LEEWAY,
    UpstreamConfigError,
    UpstreamIssuer,
    check_distinct_client_ids,
    check_url,
    foreign_prefix,
    is_loopback,
    make_issuer,
    parse_issuer_table,
)

ISSUER = "https://idp.example.com"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("10.0.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 - a host name under test, nothing binds it
        ("localhost.evil.example", False),
        ("example.com", False),
    ],
)
def test_loopback_hosts_are_localhost_and_the_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    "url",
    [
        "https://idp.example.com",
        "https://idp.example.com/realms/chat/",
        "http://localhost:8080/oidc",
        "http://127.0.0.1:9000",
        "http://[::1]:9000/",
    ],
)
def test_https_urls_and_plain_http_on_loopback_are_accepted(url: str) -> None:
    assert check_url(url, "issuer") == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://idp.example.com", "issuer must use https (plain http only on a loopback host)"),
        ("ftp://idp.example.com", "issuer must be an https:// URL"),
        ("idp.example.com", "issuer must be an https:// URL"),
        ("https://", "issuer must be an https:// URL"),
        ("https://user:pass@idp.example.com", "issuer must be an https:// URL"),
        ("https://idp.example.com/?tenant=1", "issuer must not have a query or fragment"),
        ("https://idp.example.com/#top", "issuer must not have a query or fragment"),
    ],
)
def test_other_urls_are_refused_naming_the_setting(url: str, problem: str) -> None:
    with pytest.raises(UpstreamConfigError) as refused:
        check_url(url, "issuer")
    assert str(refused.value) == problem
    assert "pass" not in str(refused.value)


def test_an_issuer_with_only_its_url_and_audience_gets_the_defaults() -> None:
    upstream = make_issuer(issuer=ISSUER, audience="chat")
    assert upstream == UpstreamIssuer(issuer=ISSUER, audience=("chat",))
    assert upstream.client_id_claim == "sub"
    assert (upstream.role_claim, upstream.role, upstream.name) == (None, None, "")
    assert upstream.algorithms == DEFAULT_ALGORITHMS and upstream.leeway == DEFAULT_LEEWAY == 30


def test_the_default_algorithms_are_asymmetric_only() -> None:
    assert set(DEFAULT_ALGORITHMS) <= set(KEY_TYPES)
    assert not any(a.startswith("HS") or a == "none" for a in KEY_TYPES)


def test_every_setting_is_kept() -> None:
    upstream = make_issuer(
        issuer=ISSUER,
        audience=["chat-web", "account"],
        client_id_claim="preferred_username",
        role_claim="realm_access.roles",
        role="staff",
        algorithms=["ES512", "PS384"],
        leeway=0,
        name="Keycloak",
    )
    assert upstream.audience == ("chat-web", "account")
    assert (upstream.client_id_claim, upstream.role_claim, upstream.role) == (
        "preferred_username",
        "realm_access.roles",
        "staff",
    )
    assert upstream.algorithms == ("ES512", "PS384") and upstream.leeway == 0


@pytest.mark.parametrize("audience", [None, "", [], ["chat", ""], ["chat", 7]])
def test_an_issuer_needs_an_audience(audience: Any) -> None:
    with pytest.raises(UpstreamConfigError, match="an audience is required"):
        make_issuer(issuer=ISSUER, audience=audience)


@pytest.mark.parametrize(
    ("algorithms", "named"),
    [(["HS256"], "HS256"), (["RS256", "none"], "none"), ([], "\\(none\\)")],
)
def test_symmetric_unknown_or_no_algorithms_are_refused(algorithms: list[str], named: str) -> None:
    with pytest.raises(UpstreamConfigError, match=f"algorithms {named} are not allowed \\(asymmetric only"):
        make_issuer(issuer=ISSUER, audience="chat", algorithms=algorithms)


@pytest.mark.parametrize("field", ["client_id_claim", "role_claim"])
@pytest.mark.parametrize("value", ["", "   "])
def test_a_blank_claim_name_is_refused_naming_the_field(field: str, value: str) -> None:
    claims: dict[str, Any] = {field: value}
    with pytest.raises(UpstreamConfigError, match=f"{field} must be a claim name"):
        make_issuer(issuer=ISSUER, audience="chat", **claims)


@pytest.mark.parametrize("leeway", [-1, MAX_LEEWAY + 1, True, 1.5])
def test_a_leeway_outside_0_to_300_whole_seconds_is_refused(leeway: Any) -> None:
    with pytest.raises(UpstreamConfigError, match=f"leeway must be 0..{MAX_LEEWAY} seconds"):
        make_issuer(issuer=ISSUER, audience="chat", leeway=leeway)


def test_an_issuer_url_that_is_not_https_is_refused() -> None:
    with pytest.raises(UpstreamConfigError, match="must use https"):
        make_issuer(issuer="http://idp.example.com", audience="chat")


@pytest.mark.parametrize(
    ("issuer", "name", "display", "discovery"),
    [
        (ISSUER, None, "idp.example.com", f"{ISSUER}/.well-known/openid-configuration"),
        (
            "https://Tenant.eu.auth0.com/",
            "Auth0",
            "Auth0",
            "https://Tenant.eu.auth0.com/.well-known/openid-configuration",
        ),
        (
            "http://127.0.0.1:9000/realms/chat",
            None,
            "127.0.0.1",
            "http://127.0.0.1:9000/realms/chat/.well-known/openid-configuration",
        ),
    ],
)
def test_an_issuer_knows_its_source_display_name_and_discovery_url(
    issuer: str, name: str | None, display: str, discovery: str
) -> None:
    upstream = make_issuer(issuer=issuer, audience="chat", name=name)
    assert upstream.source == f"oidc:{issuer}"
    assert upstream.display_name == display
    assert upstream.discovery_url == discovery


# --- one [[issuers]] table ------------------------------------------------------------------------


def test_a_table_is_read_like_the_keyword_arguments() -> None:
    table = {"issuer": ISSUER, "audience": ["a", "b"], "role_claim": "roles", "leeway": 10, "algorithms": ["ES256"]}
    assert parse_issuer_table(table, 0) == make_issuer(
        issuer=ISSUER, audience=["a", "b"], role_claim="roles", leeway=10, algorithms=["ES256"]
    )


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ("https://idp.example.com", "issuers[2] must be a table/object"),
        (
            {"issuer": ISSUER, "audience": "a", "colour": "red", "aud": "x"},
            "issuers[2] has unknown field(s): aud, colour",
        ),
        ({"audience": "a"}, "issuers[2] needs an issuer URL"),
        ({"issuer": "", "audience": "a"}, "issuers[2] needs an issuer URL"),
        ({"issuer": ISSUER, "audience": "a", "role": 1}, "issuers[2].role must be a string"),
        ({"issuer": ISSUER, "audience": "a", "name": ["x"]}, "issuers[2].name must be a string"),
        ({"issuer": ISSUER, "audience": "a", "algorithms": "RS256"}, "issuers[2].algorithms must be a list"),
        ({"issuer": ISSUER, "audience": "a", "algorithms": [256]}, "issuers[2].algorithms must be a list"),
    ],
)
def test_a_bad_table_is_refused_naming_its_index_and_field(table: Any, problem: str) -> None:
    with pytest.raises(UpstreamConfigError) as refused:
        parse_issuer_table(table, 2)
    assert str(refused.value).startswith(problem)


def test_a_tables_values_are_checked_as_make_issuer_checks_them() -> None:
    with pytest.raises(UpstreamConfigError, match="an audience is required"):
        parse_issuer_table({"issuer": ISSUER}, 0)


# --- clientId prefixes: two issuers never share a clientId ----------------------------------------


def test_a_prefix_is_prepended_to_the_claim_value() -> None:
    upstream = make_issuer(issuer=ISSUER, audience="chat", client_id_prefix="acme.")
    assert upstream.client_id_prefix == "acme."
    assert upstream.client_id_for("alice") == "acme.alice"
    assert make_issuer(issuer=ISSUER, audience="chat").client_id_for("alice") == "alice"


def test_a_table_may_give_its_issuer_a_prefix() -> None:
    table = {"issuer": ISSUER, "audience": "a", "client_id_prefix": "kc-"}
    assert parse_issuer_table(table, 0).client_id_prefix == "kc-"


@pytest.mark.parametrize(
    "prefix",
    [
        "acme:",  # ':' would add a channel segment: outside the safe set
        "*",
        "a{b}",
        "-acme",  # a clientId starts with a letter or digit
        "acme/",
        "x" * 64,  # leaves no room for the claim value
    ],
)
def test_a_prefix_outside_the_client_id_safe_set_is_refused(prefix: str) -> None:
    with pytest.raises(UpstreamConfigError, match="client_id_prefix"):
        make_issuer(issuer=ISSUER, audience="chat", client_id_prefix=prefix)


def test_one_issuer_alone_needs_no_prefix() -> None:
    check_distinct_client_ids([make_issuer(issuer=ISSUER, audience="chat")])  # no error


def test_every_issuer_but_one_needs_a_prefix_and_the_unprefixed_ones_are_named() -> None:
    first = make_issuer(issuer=ISSUER, audience="chat")
    second = make_issuer(issuer="https://kc.example.com/realms/chat", audience="chat")
    third = make_issuer(issuer="https://login.example.org", audience="chat", client_id_prefix="org.")
    check_distinct_client_ids([first, third])
    with pytest.raises(UpstreamConfigError) as refused:
        check_distinct_client_ids([first, second, third])
    message = str(refused.value)
    assert ISSUER in message and "https://kc.example.com/realms/chat" in message
    assert "login.example.org" not in message
    assert "client_id_prefix" in message


@pytest.mark.parametrize(("one", "other"), [("acme.", "acme."), ("acme.", "acme.eu."), ("a", "ab")])
def test_no_prefix_may_begin_another(one: str, other: str) -> None:
    """With "acme." and "acme.eu.", "eu.bob" of the first and "bob" of the second are both "acme.eu.bob"."""
    first = make_issuer(issuer=ISSUER, audience="chat", client_id_prefix=one)
    second = make_issuer(issuer="https://kc.example.com", audience="chat", client_id_prefix=other)
    with pytest.raises(UpstreamConfigError, match=f"'{other}'.*'{one}'|'{one}'.*'{other}'"):
        check_distinct_client_ids([first, second])


def test_the_unprefixed_issuer_may_not_mint_a_client_id_under_another_issuers_prefix() -> None:
    plain = make_issuer(issuer=ISSUER, audience="chat")
    acme = make_issuer(issuer="https://kc.example.com", audience="chat", client_id_prefix="acme.")
    issuers = [plain, acme]
    assert foreign_prefix("acme.bob", plain, issuers) == "acme."
    assert foreign_prefix("bob", plain, issuers) is None
    assert foreign_prefix("acme.bob", acme, issuers) is None  # its own prefix
