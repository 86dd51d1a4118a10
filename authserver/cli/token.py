"""``authserver token``: mint a token for an account, through the same policy as ``/auth``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import replace

from authserver.cli.common import EXIT_OK, database_name, note, sqlite_missing
from authserver.cli.devkey import development_key, development_key_path
from authserver.config import Settings
from authserver.core.callers import Identity
from authserver.core.capabilities import Capability
from authserver.core.issuance import TokenParams
from authserver.errors import ConfigError, ForbiddenError, UserError
from authserver.identity.users import UserStore, account_identity
from authserver.wiring import build_services


def run_token(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.ably_keys:
        # Development mode: sign with the key serve's embedded sandbox accepts (made here if serve has
        # not run yet; serve then uses the same one).
        expected = development_key_path(settings.database_path)
        existed = expected is not None and expected.exists()
        key, key_file = development_key(settings.database_path)
        if key_file is None:
            raise ConfigError(["ABLY_API_KEY: needed with an in-memory database (no development key to share)"])
        settings = replace(settings, ably_keys=(key,))
        if existed:
            print(
                f"authserver: development mode: signed with the development key {key.name} ({key_file}),"
                " which the embedded sandbox of `authserver serve` accepts",
                file=sys.stderr,
            )
        else:
            # No serve has run with this database (e.g. token started from another directory): a serve
            # running elsewhere has its own key and would refuse this token, so say so.
            print(
                f"authserver: development mode: made a new development key {key.name} in {key_file};"
                " an `authserver serve` started with the same settings will accept this token, one already"
                " running from another directory (another database) will not: run token where serve runs,"
                " or set AUTHSERVER_ENV_FILE",
                file=sys.stderr,
            )
    if sqlite_missing(settings):
        # Only reads: no database here means no accounts, and none is made (a demo name still gets a token).
        note(f"database: no SQLite file at {settings.database_path}: no accounts (nothing created)")
        settings = replace(settings, database_url="sqlite:///:memory:", database_path=":memory:")
    else:
        note(f"database: {database_name(settings)}")
    svc = build_services(settings, clock=time.time)

    async def find() -> Identity:
        try:
            await svc.storage.open()
            return await _token_identity(svc.users, settings, args.user)
        finally:
            await svc.storage.close()

    identity = asyncio.run(find())
    if args.ttl is not None and args.ttl <= 0:
        raise UserError("--ttl must be a positive number of seconds")
    params = TokenParams(
        ttl_ms=None if args.ttl is None else args.ttl * 1000,
        capability=None if args.capability is None else Capability.parse(args.capability),
    )
    if args.format == "tokenrequest":
        print(json.dumps(svc.issuer.token_request(identity, params).to_dict(), indent=2))
    elif args.format == "jwt":
        print(svc.issuer.jwt(identity, params).token)
    else:
        print(json.dumps(svc.issuer.jwt(identity, params).details(), indent=2))
    return EXIT_OK


async def _token_identity(users: UserStore, settings: Settings, name: str) -> Identity:
    """The account ``name``; with demo login on, a free name is a demo identity as ``/login`` would give."""
    user = await users.get(name)
    if user is None:
        if not settings.demo_login:
            raise UserError(f"no such user: {name!r}")
        identity = await users.demo_identity(name)
        print(f"authserver: no account {name!r}: a demo-login token (role {identity.role})", file=sys.stderr)
        return identity
    try:
        return account_identity(user)
    except ForbiddenError:
        raise UserError(f"user {name!r} is disabled") from None


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = sub.add_parser("token", help="mint a token for an account, through the same policy as /auth")
    token.add_argument("--user", required=True, help="account username")
    token.add_argument("--ttl", type=int, help="lifetime in seconds (clamped by the policy)")
    token.add_argument("--capability", help="requested capability JSON (intersected with the policy)")
    token.add_argument("--format", choices=("details", "jwt", "tokenrequest"), default="details")
