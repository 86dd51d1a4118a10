"""``authserver users``: manage accounts."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import TextIO

from authserver.cli.common import EXIT_OK, read_password, with_accounts, with_users
from authserver.config import Settings
from authserver.identity.operations import Operations
from authserver.identity.sessions import session_revocation_key
from authserver.identity.users import UserStore


def run_users(settings: Settings, args: argparse.Namespace, stdin: TextIO) -> int:
    command = args.users_command
    # Passwords are read before the database is opened (a prompt is no time to hold it).
    password = read_password(stdin, confirm=True) if command in ("add", "set-password") else ""

    async def run(users: UserStore) -> None:
        if command == "add":
            user = await users.add(args.name, password, role=args.role, client_id=args.client_id, now=time.time())
            print(f"added {user.username} (clientId {user.client_id}, role {user.role})")
        elif command == "list":
            rows = await users.list()
            if not rows:
                print("no users")
            for user in rows:
                state = "disabled" if user.disabled else "active"
                print(f"{user.username}\tclientId={user.client_id}\trole={user.role}\t{state}")
        elif command == "set-role":
            await users.set_role(args.name, args.role)
            print(f"{args.name}: role {args.role}")
        elif command in ("disable", "enable"):
            await users.set_disabled(args.name, command == "disable")
            print(f"{args.name}: {command}d")
        elif command == "remove":
            await users.remove(args.name)
            print(f"removed {args.name}")
        elif command == "set-password":
            await users.set_password(args.name, password)
            print(f"{args.name}: password changed")

    if command in ("sessions", "logout"):
        with_accounts(settings, lambda accounts: _sessions(accounts.operations, command, args.name))
    else:
        with_users(settings, run)
    return EXIT_OK


async def _sessions(operations: Operations, command: str, name: str) -> None:
    if command == "logout":
        await operations.end_sessions(name)
        print(f"{name}: logged out everywhere")
        return
    sessions = await operations.sessions_of(name, now=time.time())
    if not sessions:
        print(f"{name}: no sessions")
    for session in sessions:
        expires = datetime.fromtimestamp(session.expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(
            f"{session_revocation_key(session.id_hash)}\tclientId={session.client_id}\trole={session.role}"
            f"\texpires={expires}"
        )


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = sub.add_parser("users", help="manage accounts")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser("add", help="add an account (password from a prompt, or one line of stdin)")
    add.add_argument("name")
    add.add_argument("--role", help="role from the policy (default: the policy's default_role)")
    add.add_argument("--client-id", help="Ably clientId (default: the username)")
    users_sub.add_parser("list", help="list accounts")
    set_role = users_sub.add_parser("set-role", help="change an account's role")
    set_role.add_argument("name")
    set_role.add_argument("role")
    for verb, text in (("disable", "refuse logins and tokens"), ("enable", "undo disable"), ("remove", "delete")):
        users_sub.add_parser(verb, help=f"{text} for an account").add_argument("name")
    users_sub.add_parser("set-password", help="set a new password (prompt or stdin)").add_argument("name")
    users_sub.add_parser("sessions", help="an account's login sessions (revocation key, expiry)").add_argument("name")
    users_sub.add_parser("logout", help="end an account's sessions and revoke its tokens").add_argument("name")
