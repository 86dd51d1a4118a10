"""The policy: roles map to capability templates and TTL limits, read from TOML or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from authserver.core.policy import DEFAULT_POLICY_FILE, Policy, PolicyError, load_policy, parse_policy
from authserver.errors import ClientIdError, ForbiddenError

GOOD_ROLE: dict[str, Any] = {"capability": {"chat:*": ["publish", "subscribe"]}}

# --- the built-in policy --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def builtin() -> Policy:
    return load_policy(None)


def test_builtin_policy_defines_user_demo_and_admin(builtin: Policy) -> None:
    assert set(builtin.roles) == {"user", "demo", "admin"}
    assert builtin.default_role == "user"
    assert builtin.demo_role == "demo"


def test_builtin_policy_is_the_shipped_file(builtin: Policy) -> None:
    assert load_policy(DEFAULT_POLICY_FILE) == builtin


@pytest.mark.parametrize(("role", "max_ttl"), [("user", 3600), ("demo", 3600), ("admin", 86400)])
def test_builtin_roles_limit_token_lifetime(builtin: Policy, role: str, max_ttl: int) -> None:
    assert builtin.role(role).max_ttl == max_ttl


def test_builtin_user_role_expands_client_id_into_a_private_channel(builtin: Policy) -> None:
    capability = builtin.role("user").capability_for("alice")
    assert capability.to_json() == (
        '{"announcements":["history","subscribe"],'
        '"chat:*":["history","presence","publish","subscribe"],'
        '"private:alice":["*"]}'
    )


def test_builtin_admin_role_may_do_everything_on_every_channel(builtin: Policy) -> None:
    assert builtin.role("admin").capability_for("root").to_json() == '{"*":["*"]}'


def test_role_template_keeps_the_placeholder_until_expanded(builtin: Policy) -> None:
    assert "private:{clientId}" in builtin.role("user").template
    assert builtin.role("user").capability_for("bob").resources() == ("announcements", "chat:*", "private:bob")


@pytest.mark.parametrize("client_id", ["*", "a:b", "[x]", "", "x" * 65, "a b", "{clientId}"])
def test_expanding_an_unsafe_client_id_is_refused(builtin: Policy, client_id: str) -> None:
    with pytest.raises(ClientIdError):
        builtin.role("user").capability_for(client_id)


def test_unknown_role_is_a_final_refusal(builtin: Policy) -> None:
    with pytest.raises(ForbiddenError, match=r"^role 'boss' is not defined by the policy$") as exc_info:
        builtin.role("boss")
    assert exc_info.value.status == 403


# --- parsing valid policies -----------------------------------------------------------------------


def test_demo_role_defaults_to_the_default_role() -> None:
    policy = parse_policy({"default_role": "member", "roles": {"member": GOOD_ROLE}})
    assert (policy.default_role, policy.demo_role) == ("member", "member")


def test_default_role_defaults_to_user() -> None:
    policy = parse_policy({"roles": {"user": GOOD_ROLE, "guest": GOOD_ROLE}, "demo_role": "guest"})
    assert (policy.default_role, policy.demo_role) == ("user", "guest")


def test_max_ttl_is_optional() -> None:
    assert parse_policy({"roles": {"user": GOOD_ROLE}}).role("user").max_ttl is None


def test_parsed_policy_cannot_be_changed() -> None:
    policy = parse_policy({"roles": {"user": GOOD_ROLE}})
    with pytest.raises(TypeError):
        policy.roles["admin"] = policy.roles["user"]  # type: ignore[index]
    with pytest.raises(TypeError):
        policy.role("user").template["x"] = ("publish",)  # type: ignore[index]


# --- files ----------------------------------------------------------------------------------------

TOML_POLICY = """\
default_role = "member"
demo_role = "guest"

[roles.member]
max_ttl = 600
[roles.member.capability]
"chat:*" = ["publish", "subscribe"]
"inbox:{clientId}" = ["subscribe", "history"]

[roles.guest.capability]
"chat:lobby" = ["subscribe"]
"""

JSON_POLICY = {
    "default_role": "member",
    "demo_role": "guest",
    "roles": {
        "member": {
            "max_ttl": 600,
            "capability": {"chat:*": ["publish", "subscribe"], "inbox:{clientId}": ["subscribe", "history"]},
        },
        "guest": {"capability": {"chat:lobby": ["subscribe"]}},
    },
}


def _check_example_policy(policy: Policy) -> None:
    assert set(policy.roles) == {"member", "guest"}
    assert (policy.default_role, policy.demo_role) == ("member", "guest")
    assert policy.role("member").max_ttl == 600
    assert policy.role("guest").max_ttl is None
    assert policy.role("member").capability_for("ann").to_json() == (
        '{"chat:*":["publish","subscribe"],"inbox:ann":["history","subscribe"]}'
    )
    assert policy.role("guest").capability_for("ann").to_json() == '{"chat:lobby":["subscribe"]}'


def test_load_policy_reads_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(TOML_POLICY, encoding="utf-8")
    _check_example_policy(load_policy(path))


@pytest.mark.parametrize("name", ["policy.json", "POLICY.JSON"])
def test_load_policy_reads_a_json_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(json.dumps(JSON_POLICY), encoding="utf-8")
    _check_example_policy(load_policy(path))


def test_toml_and_json_forms_give_the_same_policy(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(TOML_POLICY, encoding="utf-8")
    (tmp_path / "p.json").write_text(json.dumps(JSON_POLICY), encoding="utf-8")
    assert load_policy(tmp_path / "p.toml") == load_policy(tmp_path / "p.json")


def test_missing_file_is_a_policy_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(PolicyError) as exc_info:
        load_policy(path)
    assert exc_info.value.message == f"cannot read policy file {str(path)!r}: No such file or directory"


def test_unreadable_file_is_a_policy_error(tmp_path: Path) -> None:
    # A directory cannot be read as a file, whoever runs the tests (chmod 000 does not stop root).
    with pytest.raises(PolicyError, match=r"^cannot read policy file .*: Is a directory$"):
        load_policy(tmp_path)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("bad.toml", "[roles.user\ncapability = 1\n"),
        ("bad.toml", '{"roles": {}}'),  # JSON text in a .toml file
        ("bad.json", "{"),
        ("bad.json", TOML_POLICY),  # TOML text in a .json file
    ],
)
def test_unparsable_file_is_a_policy_error_naming_the_file(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError, match=r"^policy file .* does not parse: ") as exc_info:
        load_policy(path)
    assert str(path) in exc_info.value.message


def test_file_that_is_not_utf8_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(TOML_POLICY.replace("lobby", "caf\xe9").encode("latin-1"))
    with pytest.raises(PolicyError, match="latin1.toml"):
        load_policy(path)


# --- every invalid shape: a PolicyError naming the role and field ---------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "policy has no [roles]"),
        ({"roles": {}}, "policy has no [roles]"),
        ({"roles": ["user"]}, "policy has no [roles]"),
        ({"roles": {"user": "everything"}}, "role 'user' must be a table/object"),
        ({"roles": {"a b": GOOD_ROLE}}, "role name 'a b' must be 1-64 letters, digits, '_' or '-'"),
        ({"roles": {"": GOOD_ROLE}}, "role name '' must be 1-64 letters, digits, '_' or '-'"),
        ({"roles": {"r" * 65: GOOD_ROLE}}, f"role name {'r' * 65!r} must be 1-64 letters, digits, '_' or '-'"),
        ({"roles": {"user": {**GOOD_ROLE, "colour": "red"}}}, "role 'user' has unknown field(s): colour"),
        (
            {"roles": {"user": {**GOOD_ROLE, "max-ttl": 1, "caps": {}}}},
            "role 'user' has unknown field(s): caps, max-ttl",
        ),
        ({"roles": {"user": {}}}, "role 'user' needs a non-empty capability"),
        ({"roles": {"user": {"capability": {}}}}, "role 'user' needs a non-empty capability"),
        ({"roles": {"user": {"capability": ["chat:*"]}}}, "role 'user' needs a non-empty capability"),
        (
            {"roles": {"user": {"capability": {"chat:*": "publish"}}}},
            "role 'user': capability for 'chat:*' must be a list of operations",
        ),
        (
            {"roles": {"user": {"capability": {"chat:*": ["publish", 1]}}}},
            "role 'user': capability for 'chat:*' must be a list of operations",
        ),
        (
            {"roles": {"user": {"capability": {"chat:*": []}}}},
            "role 'user': capability for \"chat:*\" lists no operations",
        ),
        (
            {"roles": {"user": {"capability": {"chat:*": ["fly"]}}}},
            'role \'user\': capability for "chat:*" lists unknown operation "fly"',
        ),
        (
            {"roles": {"user": {"capability": {"chat:*": ["*", "publish"]}}}},
            'role \'user\': capability for "chat:*" combines "*" with other operations',
        ),
        (
            {"roles": {"user": {"capability": {"private:{user}": ["*"]}}}},
            "role 'user': capability resource \"private:{user}\" has a brace that is not {clientId}",
        ),
        (
            {"roles": {"user": {**GOOD_ROLE, "max_ttl": 0}}},
            "role 'user': max_ttl must be a positive whole number of seconds",
        ),
        (
            {"roles": {"user": {**GOOD_ROLE, "max_ttl": -60}}},
            "role 'user': max_ttl must be a positive whole number of seconds",
        ),
        (
            {"roles": {"user": {**GOOD_ROLE, "max_ttl": True}}},
            "role 'user': max_ttl must be a positive whole number of seconds",
        ),
        (
            {"roles": {"user": {**GOOD_ROLE, "max_ttl": 1.5}}},
            "role 'user': max_ttl must be a positive whole number of seconds",
        ),
        (
            {"roles": {"user": {**GOOD_ROLE, "max_ttl": "3600"}}},
            "role 'user': max_ttl must be a positive whole number of seconds",
        ),
        ({"roles": {"member": GOOD_ROLE}}, "default_role 'user' is not one of the roles"),
        ({"roles": {"user": GOOD_ROLE}, "default_role": "admin"}, "default_role 'admin' is not one of the roles"),
        ({"roles": {"user": GOOD_ROLE}, "demo_role": "guest"}, "demo_role 'guest' is not one of the roles"),
    ],
)
def test_invalid_policy_is_refused_naming_the_role_and_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as exc_info:
        parse_policy(data)
    assert exc_info.value.message == message


def test_policy_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text('["user"]', encoding="utf-8")
    with pytest.raises(PolicyError, match=r"^policy must be a table/object$"):
        load_policy(path)


@pytest.mark.parametrize("field", ["default_role", "demo_role"])
def test_role_reference_that_is_not_a_string_is_refused(field: str) -> None:
    with pytest.raises(PolicyError, match=f"^{field} "):
        parse_policy({"roles": {"user": GOOD_ROLE}, field: ["user"]})


@pytest.mark.parametrize("typo", ["defualt_role", "demo-role", "role"])
def test_unknown_top_level_field_is_refused(typo: str) -> None:
    with pytest.raises(PolicyError, match=typo):
        parse_policy({"roles": {"user": GOOD_ROLE}, typo: "user"})
