"""The ``authserver`` command: serve, check, token, users, sandbox, smoke.

Only this module touches ``sys.argv``, exit codes and printing. Domain errors become exit
codes in one place (:func:`main`).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import resource
import secrets
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

from authserver import __version__
from authserver.cli import revoke as revokecli
from authserver.cli.devkey import development_key, development_key_path, read_development_key
from authserver.config import SETTINGS_HELP, Settings, load_settings, short_ttl_warnings
from authserver.core.callers import Identity
from authserver.core.capabilities import Capability
from authserver.core.issuance import TokenParams
from authserver.errors import AuthServerError, ConfigError, DatabaseError, ForbiddenError, UserError
from authserver.identity.users import User, UserStore, account_identity, outside_policy_problem
from authserver.infra.logs import configure_logging, json_lines
from authserver.infra.redislink import RedisLink
from authserver.server.serving import bind, run_servers, url_host, uvicorn_server
from authserver.storage import Storage
from authserver.storage.schema import SCHEMA_VERSION, require_current
from authserver.wiring import build_accounts, build_services, open_storage

if TYPE_CHECKING:
    import uvicorn

    from authserver.server.connections import ConnectionLimits

log = logging.getLogger("authserver")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3

T = TypeVar("T")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="authserver", description="Ably-compatible token service.")
    parser.add_argument("--version", action="version", version=f"authserver {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the token service (and a sandbox when no ABLY_API_KEY is set)")
    serve.add_argument("--host", help="interface (default AUTHSERVER_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default AUTHSERVER_PORT or 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (default AUTHSERVER_WORKERS or 1)")

    check = sub.add_parser("check", help="validate the configuration; exit 0 when it is usable")
    check.add_argument(
        "--online", action="store_true", help="also fetch each identity provider's discovery document and keys"
    )

    db = sub.add_parser("db", help="the database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply the schema migrations the database lacks (back it up first)")
    db_sub.add_parser("status", help="the database's schema version and this authserver's")

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

    revokecli.add_parser(sub)

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
            return _check(online=args.online)
        # Only serve signs session cookies: the other commands need no SESSION_SECRET.
        settings = load_settings(need_session_secret=args.command == "serve")
        configure_logging(settings.log_level, settings.log_format)
        if args.command == "serve":
            return _serve(settings, args.host, args.port, args.workers)
        if args.command == "sandbox":
            return _sandbox(settings, args.host, args.port)
        if args.command == "token":
            return _token(settings, args)
        if args.command == "users":
            return _users(settings, args, stdin)
        if args.command == "revoke":
            print(_with_storage(settings, lambda storage: revokecli.revoke_command(settings, storage, args)))
            return EXIT_OK
        if args.command == "db":
            return _db(settings, args.db_command)
        if args.command == "smoke":
            from authserver.cli.smoke import run_smoke

            password = _read_password(stdin, confirm=False) if args.password_stdin else "smoke-password"
            channel = args.channel or f"chat:smoke-{secrets.token_hex(4)}"  # nobody else publishes there
            return run_smoke(
                args.url, args.username, password, renewals=args.renewals, timeout=args.timeout, channel=channel
            )
    except (ConfigError, DatabaseError) as exc:
        _report(exc.message)
        return EXIT_CONFIG
    except AuthServerError as exc:
        _report(exc.message)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR
    return EXIT_USAGE


def _report(message: str) -> None:
    if json_lines():  # AUTHSERVER_LOG_FORMAT=json: every line on stderr is a JSON object
        log.error("%s", message)
    else:
        print(f"authserver: {message}", file=sys.stderr)


def _check(*, online: bool = False) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"authserver: {exc.message}", file=sys.stderr)
        print("settings: " + ", ".join(SETTINGS_HELP), file=sys.stderr)
        return EXIT_CONFIG
    try:
        lines = _check_lines(settings)
    except ConfigError as exc:
        print(f"authserver: {exc.message}", file=sys.stderr)
        return EXIT_CONFIG
    print("\n".join(lines))
    if online:
        found, problems = asyncio.run(_providers_online(settings))
        print("\n".join(found))
        if problems:
            print(
                "authserver: identity provider check failed:\n" + "\n".join(f"  - {p}" for p in problems),
                file=sys.stderr,
            )
            return EXIT_CONFIG
    return EXIT_OK


def _provider_lines(settings: Settings) -> list[str]:
    lines: list[str] = []
    for upstream in settings.oidc_issuers:
        roles = f"roles from claim {upstream.role_claim!r}, else " if upstream.role_claim else "role "
        lines.append(
            f"  identity provider: {upstream.issuer} (audience {', '.join(upstream.audience)}; clientId from claim"
            f" {upstream.client_id_claim!r}; {roles}{upstream.role or settings.policy.default_role!r};"
            f" leeway {upstream.leeway}s)"
        )
    if settings.provider_login is not None:
        kind = "confidential client" if settings.oidc_client_secret else "public client, PKCE only"
        lines.append(
            f"  page login: 'Log in with {settings.provider_login}' as client {settings.oidc_client_id} ({kind});"
            " register the redirect URI <this service>/login/oidc/callback"
        )
    if settings.allowed_origins:
        lines.append(f"  trusted front-end origins (CORS and CSRF): {', '.join(settings.allowed_origins)}")
    return lines


async def _providers_online(settings: Settings) -> tuple[list[str], list[str]]:
    """Fetch every provider's discovery document and keys: what was found, and the problems."""
    import httpx

    from authserver.identity.oidc.jwks import ProviderKeys

    found: list[str] = []
    problems: list[str] = []
    if not settings.oidc_issuers:
        return ["  online: no identity provider is configured (OIDC_ISSUER): nothing to fetch"], []
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as http:
        for index, upstream in enumerate(settings.oidc_issuers):
            keys = ProviderKeys(upstream, http, time.time, timeout=5.0)
            keyset = await keys.refresh()
            if keyset is None:
                problems.append(f"{upstream.issuer}: {keys.last_error}")
                continue
            described = ", ".join(
                f"{kid} ({key.key_type} {key.algorithm_name})" for kid, key in sorted(keyset.keys.items())
            )
            found.append(f"  online: {upstream.issuer}: discovery OK; keys from {keyset.jwks_uri}: {described}")
            if index == 0 and settings.provider_login is not None:
                document = (await http.get(upstream.discovery_url)).json()
                methods = document.get("code_challenge_methods_supported") or []
                missing = [n for n in ("authorization_endpoint", "token_endpoint") if not document.get(n)]
                if missing:
                    problems.append(f"{upstream.issuer}: the discovery document has no {', '.join(missing)}")
                elif "S256" not in methods:
                    problems.append(f"{upstream.issuer}: PKCE S256 is not listed in code_challenge_methods_supported")
                else:
                    found.append(f"  online: page login: authorization at {document['authorization_endpoint']}")
    return found, problems


def _check_lines(settings: Settings) -> list[str]:
    """What ``check`` reports, after opening the database. :raises ConfigError: what serve would trip on."""
    mode = "development (no ABLY_API_KEY)" if settings.development else "production"
    lines = [f"configuration OK: {mode}"]
    if settings.env_file is not None:
        lines.append(f"  settings: {settings.env_file} and the environment (the environment wins)")
    else:
        lines.append(f"  settings: the environment only (no .env in {Path.cwd()}, no AUTHSERVER_ENV_FILE)")
    if settings.ably_keys:
        lines.append(f"  signing key: {settings.ably_keys[0].name} ({len(settings.ably_keys)} key(s) configured)")
    else:
        lines.append(f"  signing key: {_development_key_note(settings)}")
    if settings.development:
        lines.append(f"  Ably: an embedded sandbox on port {settings.sandbox_port or 'any free port'}")
    else:
        lines.append(f"  Ably: {settings.ably_endpoint or 'real Ably'}")
    if settings.session_secret_ephemeral:
        lines.append("  session secret: ephemeral (SESSION_SECRET is not set; sessions end when the service stops)")
    lines.append(f"  token TTL: {settings.token_ttl}s (max {settings.token_max_ttl}s)")
    lines.append(f"  database: {_database_note(settings)}")
    lines.append(f"  Redis: {_redis_note(settings)}")
    lines.append(
        f"  login throttle: {settings.login_failures} failures per username and address,"
        f" {settings.login_failures_per_address} per address, in {settings.login_failure_window}s"
        f" ({'shared through Redis' if settings.redis_url else 'per process'});"
        f" {settings.login_concurrency} password checks at once, {settings.login_queue} waiting"
    )
    limits = [
        f"{rate} per {what}"
        for rate, what in ((settings.auth_rate_per_identity, "clientId"), (settings.auth_rate_per_address, "address"))
        if rate
    ]
    lines.append(f"  /auth limits: {', '.join(limits) if limits else 'off'}")
    workers = 1 if settings.development else settings.workers
    lines.append(f"  workers: {workers}" + (" (development mode: always one)" if settings.development else ""))
    lines.append(f"  policy: {settings.policy_source} (roles: {', '.join(sorted(settings.policy.roles))})")
    level, note = _ably_js_note(settings)
    lines.append(f"  {'WARNING: ' if level >= logging.WARNING else ''}ably-js for the page: {note}")
    lines.extend(_provider_lines(settings))
    lines.extend(f"  WARNING: {warning}" for warning in short_ttl_warnings(settings))
    if settings.demo_login:
        lines.append("  WARNING: demo login is ON: any username and password logs in. NOT FOR PRODUCTION.")
    lines.extend(_edge_lines(settings))
    return lines


def _edge_lines(settings: Settings) -> list[str]:
    """What ``check`` says about proxies, hosts, connection limits and logs."""
    from authserver.server.connections import DESCRIPTOR_RESERVE

    limits = _connection_limits(settings)
    proxies = ", ".join(settings.trusted_proxies) or "none (X-Forwarded-* ignored)"
    lines = [
        f"  trusted proxies: {proxies}",
        f"  allowed hosts: {', '.join(settings.allowed_hosts) or 'any'}",
        f"  connections: at most {limits.connection_cap()} open, headers within {limits.header_timeout:g}s"
        f" and {limits.max_header_bytes} bytes, bodies within {limits.body_timeout:g}s",
        f"  logs: {settings.log_format}, level {settings.log_level}",
    ]
    if any(net.endswith("/0") for net in settings.trusted_proxies):
        lines.append(
            "  WARNING: AUTHSERVER_TRUSTED_PROXIES trusts every address: any client can choose its own address"
        )
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if (
        settings.max_connections
        and soft != resource.RLIM_INFINITY
        and settings.max_connections > soft - DESCRIPTOR_RESERVE
    ):
        lines.append(
            f"  WARNING: AUTHSERVER_MAX_CONNECTIONS={settings.max_connections} is more than the descriptor limit"
            f" ({soft}) less {DESCRIPTOR_RESERVE}: past it new connections are dropped unanswered (raise ulimit -n)"
        )
    return lines


def _development_key_note(settings: Settings) -> str:
    path = development_key_path(settings.database_path)
    if path is None:
        return "a throwaway development key made at start-up (in-memory database: `authserver token` cannot share it)"
    key = read_development_key(path)
    if key is None:
        return f"a development key, made by the first `serve` or `token` and kept in {path} (mode 0600) for both"
    return (
        f"the development key {key.name}, kept in {path}: serve's sandbox accepts it, `authserver token` signs with it"
    )


def _database_note(settings: Settings) -> str:
    """Which database serve will open, opened to prove it is one, and its accounts checked against the policy.

    :raises ConfigError: not a SQLite database, or accounts whose role the policy does not define.
    """
    path = settings.database_path
    if path == ":memory:":
        return "in memory (accounts and sessions end when the service stops)"
    if settings.database_engine == "sqlite" and not Path(path).exists():
        return f"{path} (not there yet: created on first use)"
    where = path if settings.database_engine == "sqlite" else _storage_description(settings)

    async def inspect(users: UserStore) -> tuple[list[User], list[User]]:
        return await users.list(), await users.outside_policy()

    try:
        check_database(settings)
        accounts, outside = _with_users(settings, inspect)
    except DatabaseError as exc:
        raise ConfigError([f"DATABASE_URL: {exc.message}"]) from None
    except AuthServerError as exc:
        raise ConfigError([f"DATABASE_URL: {where}: {exc.message}"]) from None
    if outside:
        raise ConfigError([outside_policy_problem(outside, settings.policy_source)])
    return f"{where} ({len(accounts)} account(s), schema version {SCHEMA_VERSION})"


def _redis_note(settings: Settings) -> str:
    """Whether Redis answers (PING). :raises ConfigError: it does not."""
    if settings.redis_url is None:
        return "none (limits and session memory per process; set REDIS_URL for several workers or machines)"
    link = RedisLink(settings.redis_url, timeout=2.0)

    async def ping() -> str | None:
        try:
            return await link.ping()
        finally:
            await link.close()

    logging.getLogger("authserver.redis").disabled = True  # check reports it below, once
    try:
        problem = asyncio.run(ping())
    finally:
        logging.getLogger("authserver.redis").disabled = False
    if problem is not None:
        raise ConfigError([f"REDIS_URL: {problem}"])
    return f"{link.description} (answers)"


def _storage_description(settings: Settings) -> str:
    """The PostgreSQL server and database, without the password."""
    from authserver.storage.postgres import safe_url

    return "PostgreSQL " + safe_url(settings.database_url)


def _ably_js_note(settings: Settings) -> tuple[int, str]:
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


def _serve(settings: Settings, host: str | None, port: int | None, workers: int | None = None) -> int:
    from authserver.http.app import create_app
    from authserver.infra.metrics import Metrics, prepare_multiprocess_dir

    host = host or settings.host
    if port is not None:
        settings = settings.with_port(port)  # the embedded sandbox follows to port + 1
    port = settings.port
    workers = settings.workers if workers is None else workers
    if workers < 1:
        raise UserError("--workers must be at least 1")
    if workers > 1 and settings.development:
        log.warning(
            "development mode (embedded sandbox) runs one worker: --workers/AUTHSERVER_WORKERS=%d ignored;"
            " set ABLY_API_KEY (and REDIS_URL) to run several",
            workers,
        )
        workers = 1
    log.info("database: %s", check_database(settings))  # refuse to start on a database that cannot serve
    if workers > 1:
        return _serve_workers(settings, host, port, workers)
    servers: list[tuple[uvicorn.Server, socket.socket]] = []
    if settings.development:
        from authserver.sandbox import create_sandbox_app

        if port and settings.sandbox_port == port:
            raise ConfigError([f"AUTHSERVER_SANDBOX_PORT: {port} is the token service's port too; choose another"])
        key, key_file = development_key(settings.database_path)
        sandbox_sock = bind(
            host,
            settings.sandbox_port,
            server="the embedded Ably sandbox",
            moved_by="AUTHSERVER_SANDBOX_PORT (default: the service's port + 1)",
        )
        endpoint = f"http://{url_host(host)}:{sandbox_sock.getsockname()[1]}"
        settings = settings.with_sandbox(key, endpoint)
        servers.append((uvicorn_server(create_sandbox_app((key,)), settings.log_level), sandbox_sock))
        log.warning("DEVELOPMENT MODE: no ABLY_API_KEY; embedded Ably sandbox on %s with key %s", endpoint, key.name)
        if key_file is not None:
            log.info(
                "development key kept in %s: `authserver token --user NAME` mints tokens this sandbox accepts", key_file
            )
    if settings.session_secret_ephemeral:
        log.warning("no SESSION_SECRET: an ephemeral one is used; sessions end when the service stops")
    if settings.demo_login:
        log.warning("DEMO LOGIN IS ON: any username and password logs in. NOT FOR PRODUCTION.")
    level, note = _ably_js_note(settings)
    log.log(level, "ably-js for the page: %s", note)
    for warning in short_ttl_warnings(settings):
        log.warning("%s", warning)
    limits = _connection_limits(settings)
    sock: socket.socket | None = None
    try:
        sock = bind(host, port, server="the token service", moved_by="--port or AUTHSERVER_PORT")
        # Once the ports are ours: prometheus-client's multiprocess mode is process-wide.
        metrics = Metrics(multiprocess_dir=prepare_multiprocess_dir())
        app = create_app(settings, metrics=metrics)  # accounts outside the policy: warned at start-up
    except BaseException:
        for bound in [*(s for _, s in servers), *([sock] if sock is not None else [])]:
            bound.close()  # nothing will serve on these now
        raise
    servers.insert(0, (uvicorn_server(app, settings.log_level, limits), sock))
    _announce(settings, host, sock, limits, workers=1)
    run_servers(servers)
    return EXIT_OK


def _connection_limits(settings: Settings) -> ConnectionLimits:
    from authserver.server.connections import ConnectionLimits

    return ConnectionLimits(
        settings.header_timeout, settings.body_timeout, settings.max_connections, settings.max_header_bytes
    )


def _announce(settings: Settings, host: str, sock: socket.socket, limits: ConnectionLimits, *, workers: int) -> None:
    """The start-up lines of ``serve``: where it listens, with which key and connection limits."""
    log.info(
        "authserver %s on http://%s:%d (signing key %s, Ably: %s)%s",
        __version__,
        url_host(host),
        sock.getsockname()[1],
        settings.ably_keys[0].name,
        settings.ably_endpoint or "real Ably",
        f" with {workers} workers" if workers > 1 else "",
    )
    log.info(
        "connection limits: %d open connections, headers within %gs and %d bytes, bodies within %gs",
        limits.connection_cap(),
        limits.header_timeout,
        limits.max_header_bytes,
        limits.body_timeout,
    )


def _serve_workers(settings: Settings, host: str, port: int, workers: int) -> int:
    from authserver.server.workers import run_workers

    if settings.redis_url is None:
        log.warning(
            "%d workers without REDIS_URL: each keeps its own login throttle and session memory"
            " (a logout reaches the others only within a second); set REDIS_URL to share them",
            workers,
        )
    if settings.session_secret_ephemeral:
        raise ConfigError(["SESSION_SECRET: several workers need one shared secret (set SESSION_SECRET)"])
    if settings.demo_login:
        log.warning("DEMO LOGIN IS ON: any username and password logs in. NOT FOR PRODUCTION.")
    for warning in short_ttl_warnings(settings):
        log.warning("%s", warning)
    from authserver.infra.metrics import prepare_multiprocess_dir

    limits = _connection_limits(settings)
    sock = bind(host, port, server="the token service", moved_by="--port or AUTHSERVER_PORT")
    # Once the port is ours: the workers (spawned after this) inherit the metrics directory.
    prepare_multiprocess_dir()
    _announce(settings, host, sock, limits, workers=workers)
    try:
        run_workers(settings, sock, workers, limits)
    finally:
        sock.close()
    return EXIT_OK


def _sandbox(settings: Settings, host: str | None, port: int | None) -> int:
    from authserver.sandbox import create_sandbox_app

    if not settings.ably_keys:
        raise ConfigError(["ABLY_API_KEY: the sandbox needs the key(s) it should accept"])
    host = host or settings.host
    sock = bind(
        host,
        settings.sandbox_port if port is None else port,
        server="the Ably sandbox",
        moved_by="--port or AUTHSERVER_SANDBOX_PORT",
    )
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


def _with_storage(settings: Settings, work: Callable[[Storage], Awaitable[T]]) -> T:
    async def run() -> T:
        storage = open_storage(settings)
        try:
            await storage.open()
            return await work(storage)
        finally:
            await storage.close()

    return asyncio.run(run())


def _with_users(settings: Settings, work: Callable[[UserStore], Awaitable[T]]) -> T:
    """Run ``work`` on the accounts of ``settings``' database, opened for it and closed after."""

    async def run() -> T:
        keys, endpoint, deliver = revokecli.revocation_keys(settings)
        accounts = build_accounts(settings, keys=keys, endpoint=endpoint)
        try:
            await accounts.start()
            done = await work(accounts.users)
            if accounts.revoker is not None and deliver:
                await revokecli.deliver_best_effort(accounts.revoker)
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


def _db(settings: Settings, command: str) -> int:
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


def _token(settings: Settings, args: argparse.Namespace) -> int:
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
    command = args.users_command
    # Passwords are read before the database is opened (a prompt is no time to hold it).
    password = _read_password(stdin, confirm=True) if command in ("add", "set-password") else ""

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

    _with_users(settings, run)
    return EXIT_OK
