"""``authserver db``: the database schema."""

from __future__ import annotations

import argparse
import asyncio

from authserver.cli.common import EXIT_ERROR, EXIT_OK
from authserver.config import Settings
from authserver.storage.schema import SCHEMA_VERSION, require_current
from authserver.wiring import open_storage


def run_db(settings: Settings, command: str) -> int:
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


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="the database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply the schema migrations the database lacks (back it up first)")
    db_sub.add_parser("status", help="the database's schema version and this authserver's")
