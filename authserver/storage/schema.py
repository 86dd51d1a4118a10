"""Managed schema versions, shared by every engine.

Each database records its version in a one-row ``schema_version`` table. A migration is the SQL
that brings a database from the version before it to its own, per engine. At start-up:

- an empty database gets the current schema;
- a SQLite file made before versions were recorded (its tables are version 1's) is adopted as 1;
- an older version is refused until ``authserver db upgrade`` has run (upgrades are an operator's
  deliberate step: with several instances, one of them must not change the schema under the others);
- a newer or unknown version is refused: this authserver does not know that schema.
"""

from __future__ import annotations

from authserver.errors import DatabaseError

#: The schema version this authserver reads and writes.
SCHEMA_VERSION = 4

#: version -> engine -> statements, applied in one transaction with the new version recorded.
MIGRATIONS: dict[int, dict[str, tuple[str, ...]]] = {
    1: {
        "sqlite": (
            """CREATE TABLE IF NOT EXISTS users (
                username      TEXT PRIMARY KEY,
                client_id     TEXT NOT NULL UNIQUE,
                role          TEXT NOT NULL,
                password_hash TEXT NOT NULL,
                disabled      INTEGER NOT NULL DEFAULT 0,
                created       REAL NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS sessions (
                id_hash   TEXT PRIMARY KEY,
                username  TEXT NOT NULL,
                client_id TEXT NOT NULL,
                role      TEXT NOT NULL,
                source    TEXT NOT NULL,
                expires   REAL NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires)",
        ),
        "postgresql": (
            """CREATE TABLE IF NOT EXISTS users (
                username      TEXT PRIMARY KEY,
                client_id     TEXT NOT NULL UNIQUE,
                role          TEXT NOT NULL,
                password_hash TEXT NOT NULL,
                disabled      BOOLEAN NOT NULL DEFAULT FALSE,
                created       DOUBLE PRECISION NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS sessions (
                id_hash   TEXT PRIMARY KEY,
                username  TEXT NOT NULL,
                client_id TEXT NOT NULL,
                role      TEXT NOT NULL,
                source    TEXT NOT NULL,
                expires   DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires)",
            "CREATE INDEX IF NOT EXISTS sessions_username ON sessions (username)",
        ),
    },
    # 2: the revocation outbox (issue 10): revocations to deliver to Ably, kept until delivered.
    2: {
        "sqlite": (
            """CREATE TABLE IF NOT EXISTS revocation_outbox (
                id            INTEGER PRIMARY KEY AUTOINCREMENT,
                key_name      TEXT NOT NULL,
                target        TEXT NOT NULL,
                issued_before INTEGER NOT NULL,
                reauth        INTEGER NOT NULL,
                reason        TEXT NOT NULL,
                created       REAL NOT NULL,
                attempts      INTEGER NOT NULL DEFAULT 0,
                next_attempt  REAL NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS revocation_outbox_due ON revocation_outbox (next_attempt)",
        ),
        "postgresql": (
            """CREATE TABLE IF NOT EXISTS revocation_outbox (
                id            BIGSERIAL PRIMARY KEY,
                key_name      TEXT NOT NULL,
                target        TEXT NOT NULL,
                issued_before BIGINT NOT NULL,
                reauth        BOOLEAN NOT NULL,
                reason        TEXT NOT NULL,
                created       DOUBLE PRECISION NOT NULL,
                attempts      INTEGER NOT NULL DEFAULT 0,
                next_attempt  DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS revocation_outbox_due ON revocation_outbox (next_attempt)",
        ),
    },
    # 3: why a session ended (issue 10): the reason only, by the session's id hash, until the session
    # would have expired, so that the page still holding the cookie can say what happened.
    3: {
        "sqlite": (
            """CREATE TABLE IF NOT EXISTS ended_sessions (
                id_hash TEXT PRIMARY KEY,
                reason  TEXT NOT NULL,
                expires REAL NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS ended_sessions_expires ON ended_sessions (expires)",
        ),
        "postgresql": (
            """CREATE TABLE IF NOT EXISTS ended_sessions (
                id_hash TEXT PRIMARY KEY,
                reason  TEXT NOT NULL,
                expires DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS ended_sessions_expires ON ended_sessions (expires)",
        ),
    },
    # 4: OpenID Connect back-channel logout (issue 19): the provider's session id of a provider login, the
    # logouts received (which upstream tokens are refused since), the logout token ids seen (replays).
    4: {
        "sqlite": (
            """CREATE TABLE IF NOT EXISTS session_sids (
                id_hash TEXT PRIMARY KEY,
                sid     TEXT NOT NULL,
                expires REAL NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS session_sids_sid ON session_sids (sid)",
            "CREATE INDEX IF NOT EXISTS session_sids_expires ON session_sids (expires)",
            """CREATE TABLE IF NOT EXISTS upstream_logouts (
                issuer  TEXT NOT NULL,
                kind    TEXT NOT NULL,
                value   TEXT NOT NULL,
                cutoff  REAL NOT NULL,
                expires REAL NOT NULL,
                PRIMARY KEY (issuer, kind, value)
            )""",
            "CREATE INDEX IF NOT EXISTS upstream_logouts_expires ON upstream_logouts (expires)",
            """CREATE TABLE IF NOT EXISTS logout_token_ids (
                id_hash TEXT PRIMARY KEY,
                expires REAL NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS logout_token_ids_expires ON logout_token_ids (expires)",
        ),
        "postgresql": (
            """CREATE TABLE IF NOT EXISTS session_sids (
                id_hash TEXT PRIMARY KEY,
                sid     TEXT NOT NULL,
                expires DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS session_sids_sid ON session_sids (sid)",
            "CREATE INDEX IF NOT EXISTS session_sids_expires ON session_sids (expires)",
            """CREATE TABLE IF NOT EXISTS upstream_logouts (
                issuer  TEXT NOT NULL,
                kind    TEXT NOT NULL,
                value   TEXT NOT NULL,
                cutoff  DOUBLE PRECISION NOT NULL,
                expires DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (issuer, kind, value)
            )""",
            "CREATE INDEX IF NOT EXISTS upstream_logouts_expires ON upstream_logouts (expires)",
            """CREATE TABLE IF NOT EXISTS logout_token_ids (
                id_hash TEXT PRIMARY KEY,
                expires DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS logout_token_ids_expires ON logout_token_ids (expires)",
        ),
    },
}

VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"


def pending(found: int) -> list[int]:
    """The migrations a database at version ``found`` needs, in order."""
    return [version for version in sorted(MIGRATIONS) if version > found]


def schema_problem(found: int, where: str) -> str | None:
    """Why a database at version ``found`` cannot be served by this authserver, or None."""
    if found == SCHEMA_VERSION:
        return None
    if 0 <= found < SCHEMA_VERSION:
        return (
            f"the database ({where}) has schema version {found}, older than this authserver's"
            f" {SCHEMA_VERSION}: run `authserver db upgrade` (back it up first)"
        )
    return (
        f"the database ({where}) has schema version {found}, which this authserver (schema"
        f" {SCHEMA_VERSION}) does not know: refusing to use it; run the authserver version that wrote it"
    )


def require_current(found: int, where: str) -> None:
    """:raises DatabaseError: the schema is older (run ``db upgrade``), newer or unknown."""
    problem = schema_problem(found, where)
    if problem is not None:
        raise DatabaseError(problem)
