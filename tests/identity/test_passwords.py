"""Password hashing: argon2id PHC strings from argon2-cffi, verified in constant work."""

from __future__ import annotations

from functools import partial

import pytest

from authserver.errors import UserError
from authserver.identity.passwords import PasswordRules, Passwords, common_passwords

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


# --- the rules a new password must pass (NIST SP 800-63B) -----------------------------------------

RULES = PasswordRules()


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",  # a passphrase of lower-case words: no composition rules
        "abcdefgh"[::-1] + "!",  # 9 characters, nothing common
        "zq8-vw4k",  # exactly 8
        "мойпароль-2",  # other scripts count by character, not by byte
        "p" * 8 + "q",
    ],
)
def test_a_password_of_eight_characters_or_more_that_is_not_common_is_accepted(password: str) -> None:
    assert RULES.check(password, names=("alice",)) == password


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("", "password is empty"),
        ("x", "password is shorter than 8 characters (AUTHSERVER_PASSWORD_MIN_LENGTH)"),
        ("Tr0ub4!", "password is shorter than 8 characters"),  # complexity does not make up for length
        ("password", "password is one of the most common passwords"),
        ("12345678", "password is one of the most common passwords"),
        ("IloveYou", "password is one of the most common passwords"),  # whatever the case
        ("qwertyuiop", "password is one of the most common passwords"),
        ("Alice-Smith", "password is the account's own name"),
        ("alice@example.com", "password is the account's own name"),  # the clientId too
        ("zzzzzzzzzzzz", "password is one character repeated"),
        ("é" * 600, "password is longer than 1024 bytes"),
    ],
)
def test_a_password_that_breaks_a_rule_is_refused_saying_which(password: str, rule: str) -> None:
    with pytest.raises(UserError) as refused:
        RULES.check(password, names=("alice-smith", "alice@example.com"))
    assert refused.value.message.startswith(rule)
    assert not password or password not in refused.value.message.replace("password", "")  # never quoted


def test_the_minimum_length_is_a_setting_of_eight_or_more() -> None:
    longer = PasswordRules(min_length=15)
    with pytest.raises(UserError, match=r"^password is shorter than 15 characters"):
        longer.check("zq8-vw4k-ab")
    assert longer.check("zq8-vw4k-ab-cd-e") == "zq8-vw4k-ab-cd-e"


def test_the_common_passwords_come_from_a_maintained_list_of_tens_of_thousands() -> None:
    common = common_passwords()
    assert len(common) >= 30_000
    assert {"123456", "password", "letmein", "dragon"} <= common
