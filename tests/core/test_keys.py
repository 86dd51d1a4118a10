"""Ably API keys (ably-spec.md section 1): ``appId.keyId:secret``, split at the one colon.

Every malformed form has its own message, and no message, repr or str ever shows the secret.
"""

from __future__ import annotations

import pytest

from authserver.core.keys import AblyKey, parse_api_key, parse_api_keys
from authserver.errors import KeyFormatError

SECRET = "S3CR3T-VALUE"  # recognisable, so a leak into a message is easy to spot

# --- valid keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "app_id", "key_id", "secret"),
    [
        # the example of the Ably docs
        (
            "I2E_JQ.OqUdfg:EVKVTCBlzLBPYJiCZTsIW_pqylJ9WVRB5K9P19Ap1y0",
            "I2E_JQ.OqUdfg",
            "I2E_JQ",
            "OqUdfg",
            "EVKVTCBlzLBPYJiCZTsIW_pqylJ9WVRB5K9P19Ap1y0",
        ),
        ("appId.keyId:secretSecretSecret", "appId.keyId", "appId", "keyId", "secretSecretSecret"),
        ("a.b:c", "a.b", "a", "b", "c"),
        ("app-1.key_2:s/e+c=r~et!", "app-1.key_2", "app-1", "key_2", "s/e+c=r~et!"),
        ("  a.b:c\n", "a.b", "a", "b", "c"),  # surrounding whitespace (a pasted line) is dropped
    ],
)
def test_parse_accepts_valid_key(text: str, name: str, app_id: str, key_id: str, secret: str) -> None:
    key = parse_api_key(text)
    assert key == AblyKey(name=name, secret=secret)
    assert (key.name, key.app_id, key.key_id, key.secret) == (name, app_id, key_id, secret)
    assert key.secret_bytes == secret.encode("utf-8")


# --- malformed keys: one message each -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "API key is empty"),
        ("   \n", "API key is empty"),
        ("appId.keyId" + SECRET, "API key has no ':' separating the key name from the secret"),
        (f"appId.keyId:{SECRET}:more", "API key has more than one ':'; expected appId.keyId:secret"),
        (f":{SECRET}", "API key has an empty key name before ':'"),
        ("appId.keyId:", "API key has an empty secret after ':'"),
        (f"appIdkeyId:{SECRET}", "API key name (before ':') must be appId.keyId with exactly one '.'"),
        (f"app.Id.keyId:{SECRET}", "API key name (before ':') must be appId.keyId with exactly one '.'"),
        (f".keyId:{SECRET}", "API key name (before ':') has an empty appId or keyId"),
        (f"appId.:{SECRET}", "API key name (before ':') has an empty appId or keyId"),
        (f"app/Id.keyId:{SECRET}", "API key name (before ':') may only contain letters, digits, '_' and '-'"),
        (f"appId.key Id:{SECRET}", "API key name (before ':') may only contain letters, digits, '_' and '-'"),
        (f"appId.këyId:{SECRET}", "API key name (before ':') may only contain letters, digits, '_' and '-'"),
        (f"appId.keyId:{SECRET} x", "API key secret contains whitespace or non-printable characters"),
        (f"appId.keyId:{SECRET}\tx", "API key secret contains whitespace or non-printable characters"),
        (f"appId.keyId:{SECRET}\x00", "API key secret contains whitespace or non-printable characters"),
        (f"appId.keyId:{SECRET}é", "API key secret contains whitespace or non-printable characters"),
    ],
)
def test_parse_rejects_malformed_key_with_its_own_message(text: str, message: str) -> None:
    with pytest.raises(KeyFormatError) as exc_info:
        parse_api_key(text)
    assert exc_info.value.message == message
    assert str(exc_info.value) == message
    assert SECRET not in repr(exc_info.value)


def test_key_format_error_is_ablys_invalid_key_code() -> None:
    with pytest.raises(KeyFormatError) as exc_info:
        parse_api_key("no-colon")
    assert (exc_info.value.code, exc_info.value.status) == (40101, 401)


def test_parse_names_the_setting_through_label() -> None:
    with pytest.raises(KeyFormatError, match=r"^ABLY_API_KEY has an empty secret after ':'$"):
        parse_api_key("appId.keyId:", label="ABLY_API_KEY")


# --- the secret stays secret ----------------------------------------------------------------------


def test_repr_and_str_of_key_never_show_the_secret() -> None:
    key = parse_api_key(f"appId.keyId:{SECRET}")
    assert SECRET not in repr(key)
    assert SECRET not in str(key)
    assert repr(key) == "AblyKey(name='appId.keyId', secret='**********')"
    assert str(key) == "appId.keyId"


def test_repr_of_a_container_of_keys_never_shows_the_secret() -> None:
    keys = parse_api_keys(f"a.b:{SECRET}1,c.d:{SECRET}2")
    assert SECRET not in repr(keys)
    assert SECRET not in repr({"keys": list(keys)})


# --- several keys (rotation) ----------------------------------------------------------------------


def test_parse_api_keys_reads_one_key() -> None:
    assert parse_api_keys("appId.keyId:secret") == (AblyKey("appId.keyId", "secret"),)


def test_parse_api_keys_keeps_the_order_so_the_first_key_signs() -> None:
    keys = parse_api_keys("new.key:s1, old.key:s2 ,older.key:s3")
    assert [key.name for key in keys] == ["new.key", "old.key", "older.key"]
    assert [key.secret for key in keys] == ["s1", "s2", "s3"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "API key is empty"),
        (" , ", "API key is empty"),
        (f"a.b:{SECRET},c.d", "API key #2 has no ':' separating the key name from the secret"),
        (f"a.b:{SECRET},c.d:{SECRET},e.f:", "API key #3 has an empty secret after ':'"),
        (f"a.b,c.d:{SECRET}", "API key #1 has no ':' separating the key name from the secret"),
        (f"a.b:{SECRET},", "API key #2 is empty"),
        (f"a.b:{SECRET},c.d:{SECRET}:x", "API key #2 has more than one ':'; expected appId.keyId:secret"),
        (f"a.b:{SECRET}1,a.b:{SECRET}2", "API key #2 repeats key name 'a.b'"),
        (f"a.b:{SECRET}1,c.d:{SECRET}2,c.d:{SECRET}3", "API key #3 repeats key name 'c.d'"),
    ],
)
def test_parse_api_keys_names_the_position_of_a_bad_key(text: str, message: str) -> None:
    with pytest.raises(KeyFormatError) as exc_info:
        parse_api_keys(text)
    assert exc_info.value.message == message
    assert SECRET not in str(exc_info.value)
