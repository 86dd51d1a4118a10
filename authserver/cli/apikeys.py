"""``authserver api-keys``: the admin API's keys (create prints the key once; only its hash is stored)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from authserver.cli.common import EXIT_OK, with_storage
from authserver.config import Settings
from authserver.identity.adminkeys import AdminKeys
from authserver.storage import Storage


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_api_keys(settings: Settings, args: argparse.Namespace) -> int:
    command = args.keys_command

    async def run(storage: Storage) -> None:
        keys = AdminKeys(storage.admin_keys)
        if command == "create":
            made = await keys.create(args.name, now=time.time())
            print(made.secret)  # alone on stdout, for KEY=$(authserver api-keys create NAME)
            print(
                f"authserver: admin API key {made.record.name!r} (id {made.record.key_id}) created; the key is"
                " shown this once: keep it in a secret store",
                file=sys.stderr,
            )
        elif command == "list":
            rows = await keys.list()
            if not rows:
                print("no admin API keys")
            for key in rows:
                state = "active" if key.revoked is None else f"revoked {_when(key.revoked)}"
                print(
                    f"{key.name}\tid={key.key_id}\tcreated={_when(key.created)}\tlast-used={_when(key.last_used)}"
                    f"\t{state}"
                )
        elif command == "revoke":
            await keys.revoke(args.name, now=time.time())
            print(f"revoked {args.name}")

    with_storage(settings, run)
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("api-keys", help="keys of the admin API (/admin/v1)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("create", help="make a key and print it (once)").add_argument("name")
    keys_sub.add_parser("list", help="list keys: name, id, created, last used, revoked")
    keys_sub.add_parser("revoke", help="revoke a key (by name or id): refused at once everywhere").add_argument("name")
