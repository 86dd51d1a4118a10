"""Ably API keys: ``appId.keyId:secret`` split into the public key name and the private secret."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from authserver.errors import KeyFormatError

# Ably key names and ids are URL-safe identifiers; be lenient about their exact alphabet but never
# accept separators or whitespace that would make the name ambiguous in a URL path or a JWT header.
_NAME_PART = re.compile(r"[A-Za-z0-9_\-]+")
_SECRET = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces; ':' checked separately


@dataclass(frozen=True, slots=True)
class AblyKey:
    """One Ably API key. ``name`` is the JWT ``kid``; ``secret`` never appears in a repr."""

    name: str
    secret: str = field(repr=False)

    @property
    def app_id(self) -> str:
        return self.name.partition(".")[0]

    @property
    def key_id(self) -> str:
        return self.name.partition(".")[2]

    @property
    def secret_bytes(self) -> bytes:
        return self.secret.encode("utf-8")

    def __repr__(self) -> str:
        return f"AblyKey(name={self.name!r}, secret='**********')"

    def __str__(self) -> str:
        return self.name


def parse_api_key(text: str, *, label: str = "API key") -> AblyKey:
    """Parse ``appId.keyId:secret``.

    :raises KeyFormatError: with a message that says what is wrong and never repeats the secret.
    """
    text = text.strip()
    if not text:
        raise KeyFormatError(f"{label} is empty")
    colons = text.count(":")
    if colons == 0:
        raise KeyFormatError(f"{label} has no ':' separating the key name from the secret")
    if colons > 1:
        raise KeyFormatError(f"{label} has more than one ':'; expected appId.keyId:secret")
    name, _, secret = text.partition(":")
    if not name:
        raise KeyFormatError(f"{label} has an empty key name before ':'")
    if not secret:
        raise KeyFormatError(f"{label} has an empty secret after ':'")
    if name.count(".") != 1:
        raise KeyFormatError(f"{label} name (before ':') must be appId.keyId with exactly one '.'")
    app_id, _, key_id = name.partition(".")
    if not app_id or not key_id:
        raise KeyFormatError(f"{label} name (before ':') has an empty appId or keyId")
    if not _NAME_PART.fullmatch(app_id) or not _NAME_PART.fullmatch(key_id):
        raise KeyFormatError(f"{label} name (before ':') may only contain letters, digits, '_' and '-'")
    if not _SECRET.fullmatch(secret):
        raise KeyFormatError(f"{label} secret contains whitespace or non-printable characters")
    return AblyKey(name=name, secret=secret)


def parse_api_keys(text: str) -> tuple[AblyKey, ...]:
    """Parse a comma-separated list of keys (rotation): the first signs, every one must parse.

    :raises KeyFormatError: naming the position of the first key that does not parse.
    """
    parts = [p.strip() for p in text.split(",")]
    if not any(parts):
        raise KeyFormatError("API key is empty")
    keys: list[AblyKey] = []
    for index, part in enumerate(parts, start=1):
        label = "API key" if len(parts) == 1 else f"API key #{index}"
        key = parse_api_key(part, label=label)
        if any(k.name == key.name for k in keys):
            raise KeyFormatError(f"{label} repeats key name {key.name!r}")
        keys.append(key)
    return tuple(keys)
