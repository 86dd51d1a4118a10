"""What the subcommands share: exit codes, error lines, the password prompt, and the database opened for one command."""

from __future__ import annotations

import asyncio
import getpass
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

from authserver.cli.revoke import deliver_best_effort, revocation_keys
from authserver.config import Settings
from authserver.errors import DatabaseError, UserError
from authserver.identity.users import UserStore
from authserver.infra.logs import json_lines
from authserver.storage import Storage
from authserver.wiring import Accounts, build_accounts, open_storage

if TYPE_CHECKING:
    from authserver.server.guard import ConnectionLimits


log = logging.getLogger("authserver")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3

T = TypeVar("T")


def report(message: str) -> None:
    if json_lines():  # AUTHSERVER_LOG_FORMAT=json: every line on stderr is a JSON object
        log.error("%s", message)
    else:
        print(f"authserver: {message}", file=sys.stderr)


def note(message: str) -> None:
    """A line for the operator on stderr (a JSON info line with AUTHSERVER_LOG_FORMAT=json): stdout stays the result."""
    if json_lines():
        log.info("%s", message)
    else:
        print(f"authserver: {message}", file=sys.stderr)


def database_name(settings: Settings) -> str:
    """The database ``settings`` name, as the operator should read it (a PostgreSQL URL without its password)."""
    if settings.database_engine == "postgresql":
        from authserver.storage.postgres import safe_url

        return "PostgreSQL " + safe_url(settings.database_url)
    return "in memory" if settings.database_path == ":memory:" else f"SQLite {settings.database_path}"


def sqlite_missing(settings: Settings) -> bool:
    """A SQLite file that is not there (yet)."""
    path = settings.database_path
    return settings.database_engine == "sqlite" and path != ":memory:" and not Path(path).exists()


def use_database(settings: Settings, *, creates: bool) -> None:
    """Say which database the command works on; a command that only reads or changes what is there
    (``creates`` false) never makes a SQLite file: it stops, naming where it looked.

    :raises DatabaseError: no SQLite file where the settings point, and the command would not create one.
    """
    if not sqlite_missing(settings):
        note(f"database: {database_name(settings)}")
        return
    if not creates:
        raise DatabaseError(
            f"no database at {settings.database_path} (nothing created): run the command where `serve` runs,"
            " or point DATABASE_URL (or AUTHSERVER_ENV_FILE) at the database"
        )
    note(f"database: {database_name(settings)} (new: created now)")


def read_password(stdin: TextIO, *, confirm: bool) -> str:
    if stdin.isatty():
        password = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Repeat password: ") != password:
            raise UserError("passwords do not match")
        return password
    line = stdin.readline()
    if not line:
        raise UserError("no password on standard input")
    return line.rstrip("\r\n")


def with_storage(settings: Settings, work: Callable[[Storage], Awaitable[T]]) -> T:
    async def run() -> T:
        storage = open_storage(settings)
        try:
            await storage.open()
            return await work(storage)
        finally:
            await storage.close()

    return asyncio.run(run())


def with_users(settings: Settings, work: Callable[[UserStore], Awaitable[T]]) -> T:
    """Run ``work`` on the accounts of ``settings``' database, opened for it and closed after."""
    return with_accounts(settings, lambda accounts: work(accounts.users))


def with_accounts(settings: Settings, work: Callable[[Accounts], Awaitable[T]]) -> T:
    """Run ``work`` on :class:`Accounts` of ``settings``' database, opened for it and closed after;
    then try to deliver what it queued for Ably, and say when Redis did not pass a change on."""

    async def run() -> T:
        keys, endpoint, deliver = revocation_keys(settings)
        accounts = build_accounts(settings, keys=keys, endpoint=endpoint)
        try:
            await accounts.start()
            done = await work(accounts)
            if accounts.revoker is not None and deliver:
                await deliver_best_effort(accounts.revoker)
            return done
        finally:
            await accounts.close()
            if accounts.changes is not None and accounts.changes.unsent:
                print(
                    "authserver: Redis did not answer: running instances see this change within"
                    " AUTHSERVER_SESSION_RECHECK seconds instead of at once",
                    file=sys.stderr,
                )

    return asyncio.run(run())


def check_database(settings: Settings) -> str:
    """Open the database as ``serve`` will and see that it can serve: reachable, the current schema,
    a SQLite file writable. Returns its description. :raises DatabaseError: naming the problem."""

    async def run() -> str:
        storage = open_storage(settings)
        try:
            await storage.open()
            problem = await storage.ready()
            if problem is not None:
                raise DatabaseError(problem)
            return storage.description
        finally:
            await storage.close()

    return asyncio.run(run())


def connection_limits(settings: Settings) -> ConnectionLimits:
    from authserver.server.guard import ConnectionLimits

    return ConnectionLimits(
        settings.header_timeout,
        settings.body_timeout,
        settings.max_connections,
        settings.max_header_bytes,
        settings.max_in_flight,
        settings.max_queue_delay_ms / 1000,
    )


def ably_js_note(settings: Settings) -> tuple[int, str]:
    """Where the page loads ably-js from, and how loudly to say so (a log level)."""
    path = settings.ably_js_path
    installed = (path / "build" / "ably.min.js").is_file()
    if settings.ably_js == "local":
        if not installed:
            return logging.WARNING, (
                f"ABLY_JS=local, but there is no ably-js in {path}: the page cannot load it"
                " (scripts/setup installs it from npm; or set ABLY_JS=cdn)"
            )
        return logging.INFO, f"the local npm copy in {path} (served as /vendor/ably.min.js)"
    if settings.ably_js_explicit:
        return logging.INFO, "Ably's CDN, as ABLY_JS=cdn asks (the browser needs internet access)"
    return logging.WARNING, (
        f"Ably's CDN, since there is no local copy in {path} (the browser needs internet access;"
        " scripts/setup installs the npm copy, which is then used)"
    )
