"""The ``authserver`` command: serve, check, token, users, revoke, api-keys, db, sandbox, smoke.

Only this package touches ``sys.argv``, exit codes and printing; each subcommand is a module here
(its ``add_parser`` and what it runs). Domain errors become exit codes in one place (:func:`main`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

from authserver import __version__
from authserver.cli import apikeys, check, db, revoke, sandbox, serve, smoke, token, users
from authserver.cli.common import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, EXIT_USAGE, report, use_database, with_storage
from authserver.config import Settings, load_settings
from authserver.errors import AuthServerError, ConfigError, DatabaseError, ListenError
from authserver.infra.logs import configure_logging

__all__ = ["EXIT_CONFIG", "EXIT_ERROR", "EXIT_OK", "EXIT_USAGE", "main"]

Command = Callable[[Settings, argparse.Namespace, TextIO], int]


def _revoke(settings: Settings, args: argparse.Namespace, stdin: TextIO) -> int:
    print(with_storage(settings, lambda storage: revoke.revoke_command(settings, storage, args)))
    return EXIT_OK


#: What each subcommand (but ``check``, which reads the settings itself) runs, with the settings read.
COMMANDS: dict[str, Command] = {
    "serve": lambda settings, args, stdin: serve.run_serve(settings, args.host, args.port, args.workers),
    "sandbox": lambda settings, args, stdin: sandbox.run_sandbox(settings, args.host, args.port),
    "token": lambda settings, args, stdin: token.run_token(settings, args),
    "users": users.run_users,
    "revoke": _revoke,
    "api-keys": lambda settings, args, stdin: apikeys.run_api_keys(settings, args),
    "db": lambda settings, args, stdin: db.run_db(settings, args),
    "smoke": lambda settings, args, stdin: smoke.run(args, stdin),
}


def _database_use(args: argparse.Namespace) -> bool | None:
    """Whether the command may create its database (True), uses only one that is there (False), or
    opens none itself (None: serve and token say which database on their own; the others use none)."""
    if args.command == "users":
        return bool(args.users_command == "add")
    if args.command == "db":
        return bool(args.db_command in ("upgrade", "restore"))
    if args.command == "api-keys":
        return bool(args.keys_command == "create")
    if args.command == "revoke":
        return False
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="authserver", description="Ably-compatible token service.")
    parser.add_argument("--version", action="version", version=f"authserver {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (serve, check, db, token, users, revoke, apikeys, sandbox, smoke):
        command.add_parser(sub)
    return parser


def main(
    argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None, stdin: TextIO | None = None
) -> int:
    """Run one command. ``environ``: the settings (default: the process environment, over ``.env``);
    ``stdin``: where passwords are read from (default: the process's standard input)."""
    args = _parser().parse_args(argv)
    stdin = stdin or sys.stdin
    try:
        if args.command == "check":
            return check.run_check(
                online=args.online, environ=environ, host=args.host, port=args.port, development=args.dev
            )
        # Only serve signs session cookies: the other commands need no SESSION_SECRET.
        settings = load_settings(
            environ, need_session_secret=args.command == "serve", development=getattr(args, "dev", False)
        )
        configure_logging(settings.log_level, settings.log_format)
        creates = _database_use(args)
        if creates is not None:
            use_database(settings, creates=creates)
        return COMMANDS[args.command](settings, args, stdin)
    except (ConfigError, DatabaseError, ListenError) as exc:
        report(exc.message)
        return EXIT_CONFIG
    except AuthServerError as exc:
        report(exc.message)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR
