"""Admin API keys: made by ``authserver api-keys create NAME``, shown once, stored only as a hash.

A key reads ``asadm_<id>_<secret>``: ``id`` (12 hex digits) is public and names the key in lists and
audit lines; ``secret`` is 32 random bytes. The database keeps the id and the SHA-256 of the whole
key. A presented key is looked up by its id on every call (an indexed read) and its hash compared in
constant time, so a key revoked in the database is refused at once by every worker and instance: no
cache to invalidate. The last use is noted at most once a minute per key and process.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from authserver.core.clientids import check_client_id
from authserver.errors import AlreadyExistsError, ClientIdError, NotFoundError, UserError
from authserver.storage import AdminKeyRecord, AdminKeyStorage

PREFIX = "asadm_"
_KEY = re.compile(r"asadm_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
#: A use is written to the database at most this often per key and process (seconds).
TOUCH_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: ``secret`` is the whole key, to print once (never stored, never in a repr)."""

    record: AdminKeyRecord
    secret: str

    def __repr__(self) -> str:
        return f"NewKey({self.record!r})"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_id_of(token: str) -> str | None:
    """The id of a token shaped like an admin key, else None (no lookup for anything else)."""
    match = _KEY.fullmatch(token)
    return match.group(1) if match else None


class AdminKeys:
    """Makes, lists, revokes and checks admin API keys over an :class:`AdminKeyStorage`."""

    def __init__(self, storage: AdminKeyStorage) -> None:
        self.storage = storage
        self._touched: dict[str, float] = {}
        #: Once a key exists, the API is on for good (a revoked key still gets its 401): remembered.
        self._seen = False

    async def create(self, name: str, *, now: float) -> NewKey:
        """:raises UserError: a name outside the safe set. :raises AlreadyExistsError: an unrevoked key has it."""
        try:
            name = check_client_id(name)
        except ClientIdError as exc:
            raise UserError(exc.message.replace("clientId", "key name")) from None
        key_id = secrets.token_hex(6)
        secret = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        record = AdminKeyRecord(key_id, name, key_hash(secret), now)
        if not await self.storage.insert(record):
            raise AlreadyExistsError(f"an admin API key named {name!r} exists already (revoke it first)")
        self._seen = True
        return NewKey(record, secret)

    async def list(self) -> list[AdminKeyRecord]:
        return await self.storage.all()

    async def revoke(self, name: str, *, now: float) -> None:
        """:raises NotFoundError: no unrevoked key has that name or id."""
        if not await self.storage.revoke(name, now=now):
            raise NotFoundError(f"no unrevoked admin API key named {name!r}")

    async def any_exist(self) -> bool:
        if not self._seen:
            self._seen = await self.storage.exists()
        return self._seen

    async def verify(self, token: str, *, now: float) -> AdminKeyRecord | None:
        """The unrevoked key ``token`` is, or None (unknown, revoked, or not a key at all)."""
        key_id = key_id_of(token)
        if key_id is None:
            return None
        record = await self.storage.by_id(key_id)
        # NOTE: the hash is compared even for an unknown id, so both refusals cost the same.
        stored = record.key_hash if record is not None else "0" * 64
        if not hmac.compare_digest(stored, key_hash(token)) or record is None or record.revoked is not None:
            return None
        if now - self._touched.get(key_id, float("-inf")) >= TOUCH_INTERVAL:
            self._touched[key_id] = now
            await self.storage.touch(key_id, now=now, older_than=now - TOUCH_INTERVAL)
        return record
