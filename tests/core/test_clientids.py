"""ClientIds: the safe set that identities and capability templates rely on."""

from __future__ import annotations

import pytest

from authserver.core.clientids import SAFE_CLIENT_ID, check_client_id, is_safe_client_id
from authserver.errors import ClientIdError


@pytest.mark.parametrize("value", ["alice", "A", "7", "user_1.a@b+c-d", "a" * 64, "bob@example.com"])
def test_check_client_id_accepts_safe_ids(value: str) -> None:
    assert check_client_id(value) == value
    assert is_safe_client_id(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "must not be empty"),
        ("*", "wildcard"),
        ("a" * 65, "longer than 64 characters"),
        ("-alice", "must start with an ASCII letter or digit"),
        ("_alice", "must start with"),
        ("ü", "must start with"),
        ("a:b", 'clientId "a:b" contains characters outside the safe set'),
        ("[meta]x", "start with"),
        ("x{y}", "outside the safe set"),
        ("alice*", "outside the safe set"),
        ("al ice", "outside the safe set"),
        ("a/b", "outside the safe set"),
        ("jürgen", "outside the safe set"),
        ("alice\n", "outside the safe set"),
    ],
)
def test_check_client_id_rejects_unsafe_ids(value: str, message: str) -> None:
    with pytest.raises(ClientIdError) as excinfo:
        check_client_id(value)
    assert message in str(excinfo.value)
    assert excinfo.value.code == 40012
    assert not is_safe_client_id(value)


def test_safe_client_id_pattern_is_anchored() -> None:
    assert SAFE_CLIENT_ID.match("alice:bob") is None
    assert SAFE_CLIENT_ID.match("alice\n") is None
    assert SAFE_CLIENT_ID.match("alice") is not None
