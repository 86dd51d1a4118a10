"""``authserver revoke``, and the revocations the account commands queue: the command line's side of
the revocation outbox. Rows go into the database; the CLI then tries to deliver them itself (best
effort, bounded); what it cannot deliver, a running ``authserver serve`` delivers."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime

from authserver.cli.devkey import development_key_path, read_development_key
from authserver.config import Settings
from authserver.core.keys import AblyKey
from authserver.errors import UserError
from authserver.identity.operations import checked_issued_before, resolve_target
from authserver.revocation.outbox import Revoker
from authserver.storage import Storage
from authserver.wiring import command_revoker

#: The longest the CLI waits for Ably before leaving delivery to the service.
DELIVERY_TIMEOUT_S = 10.0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    revoke = sub.add_parser("revoke", help="take back issued tokens through Ably (revokeTokens)")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--user", help="every token of this account (all its devices)")
    which.add_argument("--session", help="the tokens of one session: its revocation key (s:...) or stored id hash")
    which.add_argument("--client-id", help="every token carrying this clientId")
    revoke.add_argument("--issued-before", help="only tokens issued before: ms since the epoch or ISO 8601 time")
    revoke.add_argument(
        "--allow-reauth-margin",
        action="store_true",
        help="Ably's allowReauthMargin: connected clients are asked to renew first (a short grace)",
    )


def revocation_keys(settings: Settings) -> tuple[tuple[AblyKey, ...], str | None, bool]:
    """The keys to revoke with, the endpoint, and whether this process should deliver (production)."""
    keys: tuple[AblyKey, ...] = settings.ably_keys
    if keys:
        return keys, settings.ably_endpoint, True
    path = development_key_path(settings.database_path)
    key = read_development_key(path) if path is not None and path.exists() else None
    # Development mode: the embedded sandbox of a running serve holds the key; that serve delivers.
    return ((key,) if key is not None else ()), None, False


async def deliver_best_effort(revoker: Revoker) -> None:
    """Try to deliver what is queued; what is left, ``serve`` delivers. Says which, on stderr."""
    try:
        async with asyncio.timeout(DELIVERY_TIMEOUT_S):
            await revoker.deliver()
    except TimeoutError:
        pass
    finally:
        await revoker.close()
    left = await revoker.outbox.pending()
    if left:
        print(
            f"authserver: {left} revocation(s) queued: Ably did not take them now; a running"
            " `authserver serve` delivers them",
            file=sys.stderr,
        )


def parse_time_ms(text: str) -> int:
    """``--issued-before``: ms since the epoch, or an ISO 8601 time (UTC when no zone is given)."""
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--issued-before {text[:40]!r} is neither ms since the epoch nor an ISO 8601 time") from None
    if when.tzinfo is None:
        from datetime import UTC

        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


async def revoke_command(settings: Settings, storage: Storage, args: argparse.Namespace) -> str:
    """Queue the revocation ``args`` asks for and try to deliver it; returns what to print."""
    keys, endpoint, deliver = revocation_keys(settings)
    revoker = command_revoker(settings, storage, keys, endpoint)
    if revoker is None:
        raise UserError("revocation is off (ABLY_REVOCABLE_TOKENS=false) or no Ably key is known")
    if args.user is not None:
        target = await resolve_target(storage.users, "user", args.user)
    elif args.client_id is not None:
        target = await resolve_target(storage.users, "clientId", args.client_id)
    else:
        target = await resolve_target(storage.users, "session", args.session)
    issued_before = None
    if args.issued_before is not None:
        issued_before = checked_issued_before(parse_time_ms(args.issued_before), now=time.time())
    await revoker.revoke([target], reason="operator", issued_before_ms=issued_before, reauth=args.allow_reauth_margin)
    if deliver:
        await deliver_best_effort(revoker)
    else:
        await revoker.close()
    return f"revoked {target}"
