"""Capabilities: the worked examples of ably-spec.md section 3, as parametrized tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import pytest

from authserver.core.capabilities import (
    OPERATIONS,
    Capability,
    expand_template,
    most_specific,
    resource_matches,
    specificity,
)
from authserver.errors import CapabilityError, ClientIdError

# --- parse and canonical JSON ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ('{"*":["*"]}', '{"*":["*"]}'),
        (
            '{ "b" : ["subscribe", "publish"],\n "a:*": ["presence"] }',
            '{"a:*":["presence"],"b":["publish","subscribe"]}',
        ),
        ('{"x":["publish","publish"]}', '{"x":["publish"]}'),
        ('{"x":["*","*"]}', '{"x":["*"]}'),
        ('{"[queue]*":["publish"],"[meta]*":["subscribe"],"[*]*":["*"]}', None),
        ('{"foo*":["history"]}', '{"foo*":["history"]}'),
        ('{"ch\\u00e4t":["publish"]}', '{"chät":["publish"]}'),
        ('{"a\\"b":["publish"]}', '{"a\\"b":["publish"]}'),
        (
            {"chat:*": ["subscribe"], "alerts": ("publish", "stats")},
            '{"alerts":["publish","stats"],"chat:*":["subscribe"]}',
        ),
        ({"x" * 256: ["publish"]}, '{"' + "x" * 256 + '":["publish"]}'),
    ],
)
def test_parse_accepts_valid_capability_and_serialises_canonically(
    value: str | Mapping[str, object], canonical: str | None
) -> None:
    capability = Capability.parse(value)
    expected = canonical or '{"[*]*":["*"],"[meta]*":["subscribe"],"[queue]*":["publish"]}'
    assert capability.to_json() == expected
    assert str(capability) == expected
    # canonical form is a fixed point
    assert Capability.parse(expected) == capability


def test_parse_accepts_every_documented_operation() -> None:
    capability = Capability.parse({"x": sorted(OPERATIONS)})
    assert capability.grants["x"] == OPERATIONS
    assert len(OPERATIONS) == 17


_TOO_LONG_TEXT = '{"x":["publish"]' + " " * 16384 + "}"
_TOO_LONG_MAPPING: Mapping[str, object] = {f"r{i:0>250}": ["publish"] for i in range(100)}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "capability is not valid JSON"),
        ("", "capability is not valid JSON"),
        ('{"x":["publish"]', "capability is not valid JSON"),
        ("[" * 5000 + "]" * 5000, "capability"),
        ("[]", "must be a JSON object"),
        ('"chat"', "must be a JSON object"),
        ("null", "must be a JSON object"),
        ("{}", "at least one resource"),
        ({}, "at least one resource"),
        ('{"":["publish"]}', "empty resource name"),
        ('{"a b":["publish"]}', 'resource "a b" contains whitespace or control characters'),
        ('{"a\\tb":["publish"]}', "whitespace or control"),
        ('{"a\\u0000b":["publish"]}', "whitespace or control"),
        ('{"a\\u200bb":["publish"]}', "whitespace or control"),
        ({"x" * 257: ["publish"]}, "longer than 256 characters"),
        ('{"x":[]}', 'capability for "x" lists no operations'),
        ('{"x":"publish"}', 'capability for "x" must be a list of operations'),
        ('{"x":null}', "must be a list of operations"),
        ('{"x":{"publish":true}}', "must be a list of operations"),
        ('{"x":[1]}', 'capability for "x" lists a non-string operation'),
        ('{"chat:*":["publish_"]}', 'capability for "chat:*" lists unknown operation "publish_"'),
        ('{"x":["PUBLISH"]}', 'unknown operation "PUBLISH"'),
        ('{"x":["*","publish"]}', 'capability for "x" combines "*" with other operations'),
        ('{"x":["publish","*"]}', 'combines "*"'),
        ('{"a":["publish"],"a":["subscribe"]}', 'resource "a" more than once'),
        (_TOO_LONG_TEXT, "longer than 16384 characters"),
        (_TOO_LONG_MAPPING, "longer than 16384 characters"),
        (cast("Mapping[str, object]", {1: ["publish"]}), "resource names must be strings"),
    ],
)
def test_parse_rejects_invalid_capability(value: str | Mapping[str, object], message: str) -> None:
    with pytest.raises(CapabilityError) as excinfo:
        Capability.parse(value)
    assert message in str(excinfo.value)
    assert excinfo.value.status == 400


def test_capabilities_compare_and_hash_by_content() -> None:
    a = Capability.parse('{"b":["subscribe","publish"],"a:*":["presence"]}')
    b = Capability.parse({"a:*": ["presence"], "b": ["publish", "subscribe"]})
    assert a == b
    assert hash(a) == hash(b)
    assert a != Capability.parse({"a:*": ["presence"]})
    assert a.resources() == ("a:*", "b")


def test_capability_is_immutable() -> None:
    capability = Capability.parse({"x": ["publish"]})
    with pytest.raises(TypeError):
        capability.grants["y"] = frozenset({"publish"})  # type: ignore[index]


def test_all_is_unrestricted_and_empty_capability_is_empty() -> None:
    assert Capability.all().to_json() == '{"[*]*":["*"]}'
    assert not Capability.all().is_empty()
    assert Capability().is_empty()
    assert Capability().to_json() == "{}"


# --- resource matching (spec 3.2) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*", "foo", True),
        ("*", "foo:bar:baz", True),
        ("*", "[queue]appid-queuename", False),
        ("*", "[meta]metaname", False),
        ("*", "[unclosed", False),
        ("namespace:*", "namespace:channel", True),
        ("namespace:*", "namespace:channel:other", True),
        ("namespace:*", "namespace", False),
        ("namespace:*", "other:channel", False),
        ("foo:*:baz", "foo:bar:baz", True),
        ("foo:*:baz", "foo:bar:bam:baz", False),
        ("foo:*:baz", "foo:bar:bam", False),
        ("foo:*", "foo:bar", True),
        ("foo:*", "foo:bar:bam", True),
        ("foo*", "foo*", True),
        ("foo*", "foobar", False),
        ("foo*", "foo", False),
        ("chat", "chat", True),
        ("chat", "chat:x", False),
        ("chat", "cha", False),
        ("[queue]*", "[queue]appid-queuename", True),
        ("[queue]*", "appid-queuename", False),
        ("[queue]*", "[meta]metaname", False),
        ("[queue]appid-q", "[queue]appid-q", True),
        ("[queue]appid-q", "appid-q", False),
        ("[meta]*", "[meta]metaname", True),
        ("[meta]*", "metaname", False),
        ("[*]*", "foo", True),
        ("[*]*", "foo:bar", True),
        ("[*]*", "[queue]appid-queuename", True),
        ("[*]*", "[meta]metaname", True),
        ("[*]x", "x", True),
        ("[*]x", "[meta]x", True),
        ("[*]x", "y", False),
    ],
)
def test_resource_matches(pattern: str, name: str, expected: bool) -> None:
    assert resource_matches(pattern, name) is expected


# --- intersection (spec 3.4) ----------------------------------------------------------------------

# Key capabilities modelled on the ably-common test app used by ably-js test/rest/capability.test.js.
_DOCS_KEY = '{"chat:*":["publish","subscribe","presence"],"status":["subscribe","history"],"alerts":["subscribe"]}'
_CHANNELS_KEY = (
    '{"channel0":["publish"],"channel1":["publish"],"channel2":["publish","subscribe"],'
    '"channel3":["subscribe"],"channel4":["presence","publish","subscribe"],"channel5":["presence"],"channel6":["*"]}'
)
_WILDCARD_KEY = (
    '{"cansubscribe:*":["subscribe"],"canpublish:*":["publish"],"canpublish:andpresence":["presence","publish"]}'
)

_INTERSECTIONS = [
    # (key, requested, expected canonical result; "{}" = empty -> request rejected with 401)
    (
        _DOCS_KEY,
        '{"chat:bob":["subscribe"],"status":["*"],"secret":["publish","subscribe"]}',
        '{"chat:bob":["subscribe"],"status":["history","subscribe"]}',
    ),
    (_CHANNELS_KEY, '{"channel2":["presence","subscribe"]}', '{"channel2":["subscribe"]}'),
    (_CHANNELS_KEY, '{"channel2":["*"]}', '{"channel2":["publish","subscribe"]}'),
    (_CHANNELS_KEY, '{"channel6":["publish","subscribe"]}', '{"channel6":["publish","subscribe"]}'),
    (_CHANNELS_KEY, '{"channelx":["publish"]}', "{}"),
    (_WILDCARD_KEY, '{"canpublish:check":["publish"]}', '{"canpublish:check":["publish"]}'),
    (_WILDCARD_KEY, '{"canpublish:test":["subscribe"]}', "{}"),
    ('{"*":["subscribe"]}', '{"cansubscribe:*":["subscribe"]}', '{"cansubscribe:*":["subscribe"]}'),
    # a wider requested wildcard yields the key's narrower resource
    ('{"chat:*":["publish"]}', '{"*":["*"]}', '{"chat:*":["publish"]}'),
    ('{"chat:bob":["publish"]}', '{"chat:*":["publish"]}', '{"chat:bob":["publish"]}'),
    ('{"chat:*":["publish"]}', '{"chat:*:x":["*"]}', '{"chat:*:x":["publish"]}'),
    ('{"*":["publish"]}', '{"foo*":["*"]}', '{"foo*":["publish"]}'),
    ('{"[queue]*":["*"]}', '{"[queue]appid-q":["publish"]}', '{"[queue]appid-q":["publish"]}'),
    ('{"[*]*":["subscribe"]}', '{"[meta]*":["*"]}', '{"[meta]*":["subscribe"]}'),
    # no overlap at all
    ('{"*":["*"]}', '{"[queue]*":["publish"]}', "{}"),
    ('{"namespace:*":["*"]}', '{"namespace":["publish"]}', "{}"),
    ('{"foo:*":["*"]}', '{"foo*":["publish"]}', "{}"),
    # patterns that merely overlap (neither covers the other) grant nothing: fail closed
    ('{"chat:*:x":["*"]}', '{"chat:y:*":["*"]}', "{}"),
    # results for the same resource are merged; a merged "*" stays "*"
    ('{"chat:*":["publish"],"*":["subscribe"]}', '{"chat:a":["*"]}', '{"chat:a":["publish","subscribe"]}'),
    ('{"a":["*"],"*":["publish"]}', '{"a":["*"]}', '{"a":["*"]}'),
]


@pytest.mark.parametrize(("key", "requested", "expected"), _INTERSECTIONS)
def test_intersect_reproduces_token_capability_determination(key: str, requested: str, expected: str) -> None:
    result = Capability.parse(requested).intersect(Capability.parse(key))
    assert result.to_json() == expected
    assert result.is_empty() is (expected == "{}")


@pytest.mark.parametrize(("key", "requested", "expected"), _INTERSECTIONS)
def test_intersect_is_symmetric(key: str, requested: str, expected: str) -> None:
    a, b = Capability.parse(requested), Capability.parse(key)
    assert a.intersect(b) == b.intersect(a)


@pytest.mark.parametrize("other", [_DOCS_KEY, _CHANNELS_KEY, _WILDCARD_KEY, '{"[queue]*":["publish"],"[meta]x":["*"]}'])
def test_intersect_with_all_leaves_the_other_side_unchanged(other: str) -> None:
    capability = Capability.parse(other)
    assert Capability.all().intersect(capability) == capability
    assert capability.intersect(Capability.all()) == capability


# --- operations_for / allows ----------------------------------------------------------------------

_ENFORCED = Capability.parse({"chat:*": ["publish"], "*": ["subscribe"], "[queue]*": ["*"]})


@pytest.mark.parametrize(
    ("channel", "ops"),
    [
        ("chat:a", {"publish", "subscribe"}),
        ("chat:a:b", {"publish", "subscribe"}),
        ("chat", {"subscribe"}),
        ("news", {"subscribe"}),
        ("[queue]q", set(OPERATIONS)),
        ("[meta]m", set()),
    ],
)
def test_operations_for_unions_every_matching_resource(channel: str, ops: set[str]) -> None:
    assert _ENFORCED.operations_for(channel) == ops


def test_operations_for_expands_all_ops() -> None:
    assert Capability.all().operations_for("anything") == OPERATIONS
    assert Capability.parse({"x": ["*"]}).operations_for("x") == OPERATIONS


@pytest.mark.parametrize(
    ("channel", "operation", "expected"),
    [
        ("chat:a", "publish", True),
        ("chat:a", "presence", False),
        ("news", "subscribe", True),
        ("news", "publish", False),
        ("[queue]q", "history", True),
        ("chat:a", "no-such-op", False),
        ("chat:a", "*", False),
    ],
)
def test_allows(channel: str, operation: str, expected: bool) -> None:
    assert _ENFORCED.allows(channel, operation) is expected


# --- policy templates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "client_id", "expected"),
    [
        (
            {"private:{clientId}": ["*"], "public:*": ["subscribe"]},
            "alice",
            '{"private:alice":["*"],"public:*":["subscribe"]}',
        ),
        ('{"private:{clientId}":["publish"]}', "alice", '{"private:alice":["publish"]}'),
        ({"dm:{clientId}:*": ["publish"]}, "user_1.a@b+c-d", '{"dm:user_1.a@b+c-d:*":["publish"]}'),
        ({"{clientId}-{clientId}": ["publish"]}, "bo", '{"bo-bo":["publish"]}'),
        ({"lobby": ["subscribe"]}, "alice", '{"lobby":["subscribe"]}'),
        # resources that coincide after expansion are merged
        (
            {"private:{clientId}": ["publish"], "private:alice": ["subscribe"]},
            "alice",
            '{"private:alice":["publish","subscribe"]}',
        ),
        ({"private:{clientId}": ["*"], "private:alice": ["subscribe"]}, "alice", '{"private:alice":["*"]}'),
    ],
)
def test_expand_template_substitutes_client_id(
    template: Mapping[str, Sequence[str]] | str, client_id: str, expected: str
) -> None:
    assert expand_template(template, client_id).to_json() == expected


@pytest.mark.parametrize("client_id", ["*", "a:b", "[meta]x", "x{y}", "", "a" * 65, "ü", "a b", "a/b", "-a", "alice\n"])
def test_expand_template_rejects_unsafe_client_id(client_id: str) -> None:
    with pytest.raises(ClientIdError):
        expand_template({"private:{clientId}": ["*"]}, client_id)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ({"private:{clientid}": ["*"]}, "brace that is not {clientId}"),
        ({"private:{clientId}}": ["*"]}, "brace"),
        ({"private:{{clientId}": ["*"]}, "brace"),
        ({"private:{}": ["*"]}, "brace"),
        ({"private:{clientId}": ["publish_"]}, 'unknown operation "publish_"'),
        ({"private:{clientId}": []}, "lists no operations"),
        ("[]", "must be a JSON object"),
        ({"x" * 240 + "{clientId}": ["publish"]}, "longer than 256 characters"),
    ],
)
def test_expand_template_rejects_invalid_template(template: Mapping[str, Sequence[str]] | str, message: str) -> None:
    with pytest.raises(CapabilityError) as excinfo:
        expand_template(template, "a" * 64)
    assert message in str(excinfo.value)


# --- clientIds ------------------------------------------------------------------------------------


# --- most specific match (channel claims and publish rates) --------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "name", "expected"),
    [
        (["*", "chat:*", "chat:room:1"], "chat:room:1", "chat:room:1"),  # the exact name wins
        (["*", "chat:*"], "chat:room:1", "chat:*"),  # a namespace beats everything
        (["chat:*", "chat:room:*"], "chat:room:1", "chat:room:*"),  # more literal segments
        (["chat:*:1", "chat:room:*"], "chat:room:1", "chat:room:*"),  # tie on literals: the longer literal prefix
        (["chat:*", "chat:*:*"], "chat:a:b", "chat:*:*"),  # more segments
        (["[*]*", "*"], "news", "*"),  # a concrete (absent) qualifier beats [*]
        (["[*]*", "*"], "[meta]log", "[*]*"),  # '*' never matches a qualified resource
        (["chat:*"], "news", None),
        ([], "news", None),
        (["b:*", "a:*"], "a:x", "a:*"),
    ],
)
def test_the_most_specific_matching_pattern_wins(patterns: list[str], name: str, expected: str | None) -> None:
    assert most_specific(patterns, name) == expected
    assert most_specific(reversed(patterns), name) == expected  # never depends on the order given


def test_specificity_orders_the_documented_example() -> None:
    ordered = ["chat:room:1", "chat:room:*", "chat:*:1", "chat:*", "*", "[*]*"]
    assert sorted(ordered, key=specificity, reverse=True) == ordered
