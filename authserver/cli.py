"""The ``authserver`` command: serve, check, token, users, sandbox, smoke.

Only this module touches ``sys.argv``, exit codes and printing. Domain errors become exit
codes in one place (:func:`main`).
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import secrets
import socket
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from . import __version__
from .capabilities import Capability
from .config import SETTINGS_HELP, Settings, load_settings
from .database import Database
from .errors import AuthServerError, ConfigError, UserError
from .identity import Identity
from .identity.passwords import Passwords
from .identity.users import UserStore
from .issuance import TokenParams
from .keys import AblyKey
from .logs import configure_logging
from .services import build_services
from .serving import bind, run_servers, url_host, uvicorn_server

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("authserver")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="authserver", description="Ably-compatible token service.")
    parser.add_argument("--version", action="version", version=f"authserver {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the token service (and a sandbox when no ABLY_API_KEY is set)")
    serve.add_argument("--host", help="interface (default AUTHSERVER_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default AUTHSERVER_PORT or 8000)")

    sub.add_parser("check", help="validate the configuration; exit 0 when it is usable")

    token = sub.add_parser("token", help="mint a token for an account, through the same policy as /auth")
    token.add_argument("--user", required=True, help="account username")
    token.add_argument("--ttl", type=int, help="lifetime in seconds (clamped by the policy)")
    token.add_argument("--capability", help="requested capability JSON (intersected with the policy)")
    token.add_argument("--format", choices=("details", "jwt", "tokenrequest"), default="details")

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

    sandbox = sub.add_parser("sandbox", help="run the local Ably-compatible sandbox alone")
    sandbox.add_argument("--host", help="interface (default AUTHSERVER_HOST or 127.0.0.1)")
    sandbox.add_argument("--port", type=int, help="port (default AUTHSERVER_SANDBOX_PORT or 8001)")

    smoke = sub.add_parser("smoke", help="log in and stay connected with the real ably client across renewals")
    smoke.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of the token service")
    smoke.add_argument("--username", default="smoke", help="account (or demo name) to log in as")
    smoke.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    smoke.add_argument("--renewals", type=int, default=3, help="token renewals to wait for (default 3)")
    smoke.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    smoke.add_argument("--channel", help="channel to publish on (default: a fresh chat:smoke-<random> channel)")
    return parser


def main(argv: Sequence[str] | None = None, *, stdin: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    stdin = stdin or sys.stdin
    try:
        if args.command == "check":
            return _check()
        settings = load_settings()
        configure_logging(settings.log_level)
        if args.command == "serve":
            return _serve(settings, args.host, args.port)
        if args.command == "sandbox":
            return _sandbox(settings, args.host, args.port)
        if args.command == "token":
            return _token(settings, args)
        if args.command == "users":
            return _users(settings, args, stdin)
        if args.command == "smoke":
            from .smoke import run_smoke

            password = _read_password(stdin, confirm=False) if args.password_stdin else "smoke-password"
            channel = args.channel or f"chat:smoke-{secrets.token_hex(4)}"  # nobody else publishes there
            return run_smoke(
                args.url, args.username, password, renewals=args.renewals, timeout=args.timeout, channel=channel
            )
    except ConfigError as exc:
        print(f"authserver: {exc.message}", file=sys.stderr)
        return EXIT_CONFIG
    except AuthServerError as exc:
        print(f"authserver: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR
    return EXIT_USAGE


def _check() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"authserver: {exc.message}", file=sys.stderr)
        print("settings: " + ", ".join(SETTINGS_HELP), file=sys.stderr)
        return EXIT_CONFIG
    mode = "development (no ABLY_API_KEY)" if settings.development else "production"
    print(f"configuration OK: {mode}")
    if settings.ably_keys:
        print(f"  signing key: {settings.ably_keys[0].name} ({len(settings.ably_keys)} key(s) configured)")
    else:
        print("  signing key: a throwaway development key, made at start-up")
    if settings.development:
        print(f"  Ably: an embedded sandbox on port {settings.sandbox_port or 'any free port'}")
    else:
        print(f"  Ably: {settings.ably_endpoint or 'real Ably'}")
    if settings.session_secret_ephemeral:
        print("  session secret: ephemeral (SESSION_SECRET is not set; sessions end when the service stops)")
    print(f"  token TTL: {settings.token_ttl}s (max {settings.token_max_ttl}s)")
    print(f"  database: {settings.database_url}")
    print(f"  policy: {settings.policy_source} (roles: {', '.join(sorted(settings.policy.roles))})")
    if settings.demo_login:
        print("  WARNING: demo login is ON: any username and password logs in. NOT FOR PRODUCTION.")
    return EXIT_OK


def development_key() -> AblyKey:
    """A fresh throwaway key for the embedded sandbox; it exists only in this process."""
    return AblyKey(name=f"dev.{secrets.token_hex(3)}", secret=secrets.token_urlsafe(32))


def _serve(settings: Settings, host: str | None, port: int | None) -> int:
    from .app import create_app

    host = host or settings.host
    port = settings.port if port is None else port
    servers: list[tuple[uvicorn.Server, socket.socket]] = []
    if settings.development:
        from .sandbox import create_sandbox_app

        key = development_key()
        sandbox_sock = bind(host, settings.sandbox_port if settings.sandbox_port != port or port == 0 else 0)
        sandbox_port = sandbox_sock.getsockname()[1]
        endpoint = f"http://{url_host(host)}:{sandbox_port}"
        settings = settings.with_sandbox(key, endpoint)
        servers.append((uvicorn_server(create_sandbox_app((key,)), settings.log_level), sandbox_sock))
        log.warning("DEVELOPMENT MODE: no ABLY_API_KEY; embedded Ably sandbox on %s with key %s", endpoint, key.name)
    if settings.session_secret_ephemeral:
        log.warning("no SESSION_SECRET: an ephemeral one is used; sessions end when the service stops")
    if settings.demo_login:
        log.warning("DEMO LOGIN IS ON: any username and password logs in. NOT FOR PRODUCTION.")
    app = create_app(settings)
    sock = bind(host, port)
    servers.insert(0, (uvicorn_server(app, settings.log_level), sock))
    log.info(
        "authserver %s on http://%s:%d (signing key %s, Ably: %s)",
        __version__,
        url_host(host),
        sock.getsockname()[1],
        settings.ably_keys[0].name,
        settings.ably_endpoint or "real Ably",
    )
    run_servers(servers)
    return EXIT_OK


def _sandbox(settings: Settings, host: str | None, port: int | None) -> int:
    from .sandbox import create_sandbox_app

    if not settings.ably_keys:
        raise ConfigError(["ABLY_API_KEY: the sandbox needs the key(s) it should accept"])
    host = host or settings.host
    sock = bind(host, settings.sandbox_port if port is None else port)
    app = create_sandbox_app(settings.ably_keys, key_capabilities=_key_capabilities(settings))
    log.info(
        "Ably sandbox on http://%s:%d for key(s) %s",
        url_host(host),
        sock.getsockname()[1],
        ", ".join(k.name for k in settings.ably_keys),
    )
    run_servers([(uvicorn_server(app, settings.log_level), sock)])
    return EXIT_OK


def _key_capabilities(settings: Settings) -> dict[str, Capability] | None:
    if settings.key_capability is None:
        return None
    return {key.name: settings.key_capability for key in settings.ably_keys}


def _user_store(settings: Settings) -> UserStore:
    return UserStore(Database(settings.database_path), Passwords(), settings.policy)


def _token(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.ably_keys:
        raise ConfigError(["ABLY_API_KEY: needed to sign tokens outside the development server"])
    svc = build_services(settings, clock=time.time)
    user = svc.users.get(args.user)
    if user is None:
        raise UserError(f"no such user: {args.user!r}")
    if user.disabled:
        raise UserError(f"user {args.user!r} is disabled")
    identity = Identity(subject=user.username, client_id=user.client_id, role=user.role)
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


def _read_password(stdin: TextIO, *, confirm: bool) -> str:
    if stdin.isatty():
        password = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Repeat password: ") != password:
            raise UserError("passwords do not match")
        return password
    line = stdin.readline()
    if not line:
        raise UserError("no password on standard input")
    return line.rstrip("\r\n")


def _users(settings: Settings, args: argparse.Namespace, stdin: TextIO) -> int:
    users = _user_store(settings)
    command = args.users_command
    if command == "add":
        user = users.add(
            args.name, _read_password(stdin, confirm=True), role=args.role, client_id=args.client_id, now=time.time()
        )
        print(f"added {user.username} (clientId {user.client_id}, role {user.role})")
    elif command == "list":
        rows = users.list()
        if not rows:
            print("no users")
        for user in rows:
            state = "disabled" if user.disabled else "active"
            print(f"{user.username}\tclientId={user.client_id}\trole={user.role}\t{state}")
    elif command == "set-role":
        users.set_role(args.name, args.role)
        print(f"{args.name}: role {args.role}")
    elif command in ("disable", "enable"):
        users.set_disabled(args.name, command == "disable")
        print(f"{args.name}: {command}d")
    elif command == "remove":
        users.remove(args.name)
        print(f"removed {args.name}")
    elif command == "set-password":
        users.set_password(args.name, _read_password(stdin, confirm=True))
        print(f"{args.name}: password changed")
    return EXIT_OK
