"""``authserver db``: the database schema, and backups of a SQLite database."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from authserver.cli.common import EXIT_ERROR, EXIT_OK, note
from authserver.config import Settings
from authserver.errors import DatabaseError, UserError
from authserver.storage.schema import SCHEMA_VERSION, require_current
from authserver.wiring import open_storage

#: What to use for a PostgreSQL database, which has its own tools for a consistent copy.
PG_DUMP_HINT = (
    "PostgreSQL is backed up with its own tools: pg_dump --format=custom --file=authserver.dump DATABASE_URL,"
    " restored with pg_restore --clean --if-exists --dbname=DATABASE_URL authserver.dump (docs/operations.md)"
)


def run_db(settings: Settings, args: argparse.Namespace) -> int:
    command = args.db_command
    if command in ("backup", "restore"):
        if settings.database_engine != "sqlite" or settings.database_path == ":memory:":
            raise UserError(PG_DUMP_HINT if settings.database_engine == "postgresql" else "an in-memory database")
        return backup(settings, Path(args.path)) if command == "backup" else restore(settings, Path(args.path))

    async def run() -> int:
        storage = open_storage(settings)
        try:
            found = await storage.version()
            if command == "status":
                state = "empty" if found is None else f"schema version {found}"
                print(f"{storage.description}: {state}; this authserver uses schema version {SCHEMA_VERSION}")
                return EXIT_OK if found == SCHEMA_VERSION else EXIT_ERROR
            if found is not None and found > SCHEMA_VERSION:
                require_current(found, storage.description)
            applied = await storage.upgrade()
            if applied:
                print(f"{storage.description}: upgraded to schema version {applied[-1]}")
            else:
                print(f"{storage.description}: already at schema version {SCHEMA_VERSION}")
            return EXIT_OK
        finally:
            await storage.close()

    return asyncio.run(run())


def backup(settings: Settings, target: Path) -> int:
    """A consistent copy of the SQLite database in one new file, safe while ``serve`` runs."""
    from authserver.storage.sqlite import copy_database

    if target.exists():
        raise UserError(f"{target} exists already: a backup never overwrites a file")
    if not target.parent.is_dir():
        raise UserError(f"directory {target.parent} does not exist")
    partial = target.with_name(f".{target.name}.partial")
    try:
        version = copy_database(settings.database_path, str(partial))
        os.replace(partial, target)  # a backup file is complete or not there at all
    finally:
        partial.unlink(missing_ok=True)
    print(f"backed up {settings.database_path} to {target} (schema version {version})")
    return EXIT_OK


def restore(settings: Settings, source: Path) -> int:
    """Put the database back as ``source`` (a backup) has it; the database as it was is kept beside it."""
    from authserver.storage.sqlite import copy_database

    if not source.is_file():
        raise UserError(f"no backup at {source}")
    database = Path(settings.database_path)
    kept = None
    if database.exists():
        kept = database.with_name(f"{database.name}.before-restore-{time.strftime('%Y%m%dT%H%M%S')}")
        copy_database(str(database), str(kept))
    try:
        version = copy_database(str(source), str(database), self_contained=False)
    except DatabaseError:
        if kept is not None:
            kept.unlink()  # nothing was changed: nothing to keep
        raise
    print(f"restored {database} from {source} (schema version {version})")
    if kept is not None:
        note(f"the database as it was before is kept in {kept}")
    if version < SCHEMA_VERSION:
        note(f"schema version {version} is older than this authserver's {SCHEMA_VERSION}: run `authserver db upgrade`")
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="the database schema; backups of a SQLite database")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply the schema migrations the database lacks (back it up first)")
    db_sub.add_parser("status", help="the database's schema version and this authserver's")
    backup_parser = db_sub.add_parser(
        "backup", help="copy a SQLite database to PATH (online: safe while serve runs); PostgreSQL: pg_dump"
    )
    backup_parser.add_argument("path", help="the backup file to write (must not exist)")
    restore_parser = db_sub.add_parser(
        "restore", help="put a SQLite database back from a backup (stop serve first; the old one is kept)"
    )
    restore_parser.add_argument("path", help="the backup file to read")
