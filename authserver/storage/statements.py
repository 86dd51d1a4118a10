"""The SQL both engines run, written once with ``?`` placeholders; each engine takes its copy with its own
placeholder (:data:`SQLITE`, :data:`POSTGRES`). What differs between the engines stays in their modules."""

from __future__ import annotations

from dataclasses import dataclass, fields

_USER_COLUMNS = "username, client_id, role, disabled, password_hash"


@dataclass(frozen=True)
class Statements:
    user_by_name: str = f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?"  # noqa: S608 - fixed text
    user_by_client_id: str = f"SELECT {_USER_COLUMNS} FROM users WHERE client_id = ?"  # noqa: S608 - fixed text
    all_users: str = f"SELECT {_USER_COLUMNS} FROM users ORDER BY username"  # noqa: S608 - fixed text
    name_taken: str = "SELECT 1 FROM users WHERE username = ? OR client_id = ? OR username = ? OR client_id = ?"
    insert_user: str = (
        "INSERT INTO users (username, client_id, role, password_hash, disabled, created) VALUES (?, ?, ?, ?, ?, ?)"
    )
    set_role: str = "UPDATE users SET role = ? WHERE username = ?"
    set_disabled: str = "UPDATE users SET disabled = ? WHERE username = ?"
    password_hash: str = "UPDATE users SET password_hash = ? WHERE username = ?"  # noqa: S105 - a statement
    delete_user: str = "DELETE FROM users WHERE username = ?"
    expire_sessions: str = "DELETE FROM sessions WHERE expires <= ?"
    expire_ended: str = "DELETE FROM ended_sessions WHERE expires <= ?"
    insert_session: str = (
        "INSERT INTO sessions (id_hash, username, client_id, role, source, expires) VALUES (?, ?, ?, ?, ?, ?)"
    )
    #: The identity provider's session id of a provider login's session (its back-channel logout names it).
    insert_session_sid: str = "INSERT INTO session_sids (id_hash, sid, expires) VALUES (?, ?, ?)"
    expire_session_sids: str = "DELETE FROM session_sids WHERE expires <= ?"
    #: ``{where}``: the engine's clause selecting the sessions that end (its first parameter: the reason).
    end_sessions: str = (
        "INSERT INTO ended_sessions (id_hash, reason, expires) SELECT id_hash, ?, expires FROM sessions WHERE {where}"
        " ON CONFLICT (id_hash) DO UPDATE SET reason = excluded.reason, expires = excluded.expires"
    )
    delete_sessions: str = "DELETE FROM sessions WHERE {where}"
    ended_reason: str = "SELECT reason FROM ended_sessions WHERE id_hash = ? AND expires > ?"
    queue_revocation: str = (
        "INSERT INTO revocation_outbox (key_name, target, issued_before, reauth, reason, created, next_attempt)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    #: Back-channel logouts: a later logout of the same subject or provider session moves the cutoff on.
    record_logout: str = (
        "INSERT INTO upstream_logouts (issuer, kind, value, cutoff, expires) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (issuer, kind, value) DO UPDATE SET"
        " cutoff = CASE WHEN excluded.cutoff > upstream_logouts.cutoff THEN excluded.cutoff"
        " ELSE upstream_logouts.cutoff END,"
        " expires = CASE WHEN excluded.expires > upstream_logouts.expires THEN excluded.expires"
        " ELSE upstream_logouts.expires END"
    )
    expire_logouts: str = "DELETE FROM upstream_logouts WHERE expires <= ?"
    logout_cutoffs: str = (
        "SELECT kind, cutoff FROM upstream_logouts WHERE issuer = ? AND expires > ?"
        " AND ((kind = 'sub' AND value = ?) OR (kind = 'sid' AND value = ?))"
    )
    logout_sessions: str = "SELECT id_hash, client_id FROM sessions WHERE {where}"
    #: The ids of the logout tokens received (``id_hash``: a digest of issuer and ``jti``).
    claim_seen_id: str = (
        "INSERT INTO logout_token_ids (id_hash, expires) VALUES (?, ?) ON CONFLICT (id_hash) DO NOTHING"
    )
    expire_seen_ids: str = "DELETE FROM logout_token_ids WHERE expires <= ?"
    release_seen_id: str = "DELETE FROM logout_token_ids WHERE id_hash = ?"
    outbox_count: str = "SELECT COUNT(*) FROM revocation_outbox"
    schema_version: str = "SELECT MAX(version) FROM schema_version"
    clear_version: str = "DELETE FROM schema_version"
    record_version: str = "INSERT INTO schema_version (version) VALUES (?)"

    def with_placeholder(self, mark: str) -> Statements:
        return Statements(**{f.name: getattr(self, f.name).replace("?", mark) for f in fields(self)})


SQLITE = Statements()
POSTGRES = SQLITE.with_placeholder("%s")
