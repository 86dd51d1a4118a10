"""Password hashing: argon2id PHC strings from argon2-cffi, verified in constant work."""

from __future__ import annotations

from functools import partial

import pytest

from authserver.identity.passwords import Passwords

# Real argon2id with cheap parameters: the tests check behaviour, not the work factor.
fast_passwords = partial(Passwords, time_cost=1, memory_cost=8192, parallelism=1)


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return fast_passwords()


def test_hash_is_an_argon2id_phc_string_with_the_configured_parameters(passwords: Passwords) -> None:
    password_hash = passwords.hash("correct horse")
    assert password_hash.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert "correct horse" not in password_hash


def test_same_password_hashes_differently_each_time(passwords: Passwords) -> None:
    assert passwords.hash("correct horse") != passwords.hash("correct horse")


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        ("correct horse", True),
        ("correct horsE", False),
        ("correct horse ", False),
        ("", False),
        ("battery staple", False),
    ],
)
def test_verify_accepts_only_the_same_password(passwords: Passwords, attempt: str, expected: bool) -> None:
    assert passwords.verify(passwords.hash("correct horse"), attempt) is expected


def test_verify_handles_non_ascii_passwords(passwords: Passwords) -> None:
    password_hash = passwords.hash("pässwörd 🔑")
    assert passwords.verify(password_hash, "pässwörd 🔑") is True
    assert passwords.verify(password_hash, "passwort 🔑") is False


@pytest.mark.parametrize("attempt", ["", "anything", "dummy password for unknown users"])
def test_verify_without_a_hash_is_always_false(passwords: Passwords, attempt: str) -> None:
    # An unknown user: the work is done against a dummy hash, the answer is always no.
    assert passwords.verify(None, attempt) is False


@pytest.mark.parametrize("bad_hash", ["not a hash", "$argon2id$v=19$m=8192,t=1,p=1$garbage", "$2b$12$abcdefghijk"])
def test_verify_against_a_malformed_hash_is_false(passwords: Passwords, bad_hash: str) -> None:
    assert passwords.verify(bad_hash, "anything") is False


def test_verify_with_an_empty_hash_is_always_false(passwords: Passwords) -> None:
    # An account row whose password_hash is '' (e.g. imported or blanked by hand) must not log in
    # with the dummy password that is written in the source code.
    assert passwords.verify("", "dummy password for unknown users") is False


def test_hash_with_other_parameters_needs_rehash(passwords: Passwords) -> None:
    password_hash = passwords.hash("correct horse")
    assert passwords.needs_rehash(password_hash) is False
    assert fast_passwords(time_cost=2).needs_rehash(password_hash) is True


def test_hash_made_with_other_parameters_still_verifies(passwords: Passwords) -> None:
    stronger = fast_passwords(time_cost=2, memory_cost=16384)
    assert passwords.verify(stronger.hash("correct horse"), "correct horse") is True
