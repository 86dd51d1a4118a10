"""What the admin API keeps and reads, on both engines: admin API keys (a hash only; a name is unique
among unrevoked keys; revoked in one connection, refused in another at once), a user's live sessions,
and the revocation outbox's state."""

from __future__ import annotations

import pytest

from authserver.errors import AlreadyExistsError, NotFoundError, UserError
from authserver.identity.adminkeys import TOUCH_INTERVAL, AdminKeys, key_hash
from authserver.storage import OutboxState, PendingRevocation, Storage

from conftest import Reopen, raw_sql

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000.0


async def test_a_key_is_stored_as_a_hash_and_checked_until_revoked(storage: Storage, reopen: Reopen) -> None:
    keys = AdminKeys(storage.admin_keys)
    assert not await keys.any_exist()
    made = await keys.create("backend", now=NOW)
    assert made.secret.startswith(f"asadm_{made.record.key_id}_") and made.secret not in repr(made)
    rows = await raw_sql(storage, "SELECT key_id, name, key_hash FROM admin_keys")
    assert [tuple(r) for r in rows] == [(made.record.key_id, "backend", key_hash(made.secret))]
    assert made.secret not in str(rows)
    assert await keys.verify(made.secret, now=NOW) == made.record
    other = await reopen()  # another worker or instance on the same database
    try:
        theirs = AdminKeys(other.admin_keys)
        assert await theirs.any_exist()
        assert await theirs.verify(made.secret, now=NOW) is not None
        await keys.revoke("backend", now=NOW + 1)
        assert await theirs.verify(made.secret, now=NOW + 1) is None
    finally:
        await other.close()
    assert await keys.verify(made.secret, now=NOW + 2) is None
    assert await keys.any_exist()  # a revoked key still keeps the API on (and gets its 401)


async def test_names_are_unique_among_unrevoked_keys(storage: Storage) -> None:
    keys = AdminKeys(storage.admin_keys)
    first = await keys.create("ci", now=NOW)
    with pytest.raises(AlreadyExistsError, match="named 'ci' exists already"):
        await keys.create("ci", now=NOW)
    await keys.revoke(first.record.key_id, now=NOW)  # by id
    second = await keys.create("ci", now=NOW + 1)
    with pytest.raises(NotFoundError):
        await keys.revoke(first.record.key_id, now=NOW + 2)
    listed = [(k.name, k.key_id, k.revoked) for k in await keys.list()]
    assert listed == [("ci", first.record.key_id, NOW), ("ci", second.record.key_id, None)]
    with pytest.raises(UserError, match="key name"):
        await keys.create("no spaces", now=NOW)


async def test_only_a_well_formed_key_is_looked_up_and_a_use_is_noted_once_a_minute(storage: Storage) -> None:
    keys = AdminKeys(storage.admin_keys)
    made = await keys.create("ops", now=NOW)
    for wrong in ("", "asadm_", made.secret + "x", made.secret.replace("asadm_", "asadm-"), "eyJ.x.y"):
        assert await keys.verify(wrong, now=NOW) is None
    await keys.verify(made.secret, now=NOW + 10)
    await keys.verify(made.secret, now=NOW + 20)
    assert (await keys.list())[0].last_used == NOW + 10
    await keys.verify(made.secret, now=NOW + 10 + TOUCH_INTERVAL)
    assert (await keys.list())[0].last_used == NOW + 10 + TOUCH_INTERVAL


async def test_a_users_live_sessions_are_listed_soonest_to_expire_first(storage: Storage) -> None:
    sessions = storage.sessions
    for id_hash, expires in (("h-late", NOW + 200), ("h-soon", NOW + 100), ("h-gone", NOW - 1)):
        await sessions.insert(
            id_hash, subject="alice", client_id="alice", role="user", source="account", expires=expires, now=NOW - 10
        )
    await sessions.insert(
        "h-demo", subject="alice", client_id="alice", role="demo", source="demo", expires=NOW + 50, now=NOW - 10
    )
    listed = await sessions.of_subject("alice", "account", now=NOW)
    assert [(s.id_hash, s.expires, s.role) for s in listed] == [
        ("h-soon", NOW + 100, "user"),
        ("h-late", NOW + 200, "user"),
    ]


async def test_the_outbox_state_counts_pending_due_and_retried_rows(storage: Storage) -> None:
    outbox = storage.outbox
    assert await outbox.state(now=NOW) == OutboxState(0, 0, 0, None, 0)
    await outbox.add([PendingRevocation("app.key", f"clientId:{n}", 1000, False, "test") for n in "abc"], now=NOW)
    claimed = await outbox.claim(now=NOW, limit=1, lease=15.0)
    await outbox.retry([claimed[0].id], next_attempt=NOW + 30)
    state = await outbox.state(now=NOW + 1)
    assert (state.pending, state.due, state.retrying, state.oldest, state.max_attempts) == (3, 2, 1, NOW, 1)
