"""``authserver check``: validate the configuration and say what ``serve`` would run with."""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from authserver.cli.common import EXIT_CONFIG, EXIT_OK, ably_js_note, check_database, connection_limits, with_users
from authserver.cli.devkey import development_key_path, development_session_secret_path, read_development_key
from authserver.config import SETTINGS_HELP, Settings, load_settings, open_metrics_warning, short_ttl_warnings
from authserver.errors import AuthServerError, ConfigError, DatabaseError
from authserver.identity.users import User, UserStore, outside_policy_problem
from authserver.infra.redislink import RedisLink
from authserver.server.serving import url_host
from authserver.storage.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from authserver.server.guard import ConnectionLimits


def run_check(
    *,
    online: bool = False,
    environ: Mapping[str, str] | None = None,
    host: str | None = None,
    port: int | None = None,
    development: bool = False,
) -> int:
    """``host``, ``port`` and ``development``: what ``serve --host/--port/--dev`` would be given."""
    try:
        settings = load_settings(environ, development=development)
        if host is not None:
            settings = replace(settings, host=host)
        if port is not None:
            settings = settings.with_port(port)  # as serve --port moves it, the sandbox with it
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
    if settings.misspelled:
        print(
            "authserver: likely misspelled settings:\n" + "\n".join(f"  - {m}" for m in settings.misspelled),
            file=sys.stderr,
        )
        return EXIT_CONFIG
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


def _admin_note(settings: Settings) -> str:
    if not settings.admin_api:
        return "off (AUTHSERVER_ADMIN_API=off)"
    rate = f"{settings.admin_rate} per credential"
    if settings.admin_role:
        return f"/admin/v1 for admin API keys and provider tokens with role {settings.admin_role!r}; {rate}"
    return f"/admin/v1 once an admin API key exists (authserver api-keys create NAME); {rate}"


def _provider_lines(settings: Settings) -> list[str]:
    lines: list[str] = []
    for upstream in settings.oidc_issuers:
        roles = f"roles from claim {upstream.role_claim!r}, else " if upstream.role_claim else "role "
        source = f"{upstream.client_id_prefix!r} + " if upstream.client_id_prefix else "from "
        source += f"claim {upstream.client_id_claim!r}"
        lines.append(
            f"  identity provider: {upstream.issuer} (audience {', '.join(upstream.audience)}; clientId {source};"
            f" {roles}{upstream.role or settings.policy.default_role!r};"
            f" leeway {upstream.leeway}s)"
        )
        if upstream.logout_audience:
            where = settings.public_url or "https://<this service>"
            lines.append(
                f"  back-channel logout from {upstream.issuer} (aud {', '.join(upstream.logout_audience)}):"
                f" register the backchannel_logout_uri {where}/oidc/backchannel-logout"
            )
    if settings.provider_login is not None:
        kind = "confidential client" if settings.oidc_client_secret else "public client, PKCE only"
        lines.append(
            f"  page login: 'Log in with {settings.provider_login}' as client {settings.oidc_client_id} ({kind});"
            f" register the redirect URI {settings.public_url}/login/oidc/callback"
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
    mode = "development (AUTHSERVER_ENV=development and no ABLY_API_KEY)" if settings.development else "production"
    lines = [f"configuration OK: {mode}"]
    if settings.ably_keys and settings.environment == "development":
        lines.append("  note: AUTHSERVER_ENV=development is ignored: ABLY_API_KEY is set, so this is production")
    if settings.env_file is not None:
        lines.append(f"  settings: {settings.env_file} and the environment (the environment wins)")
    else:
        lines.append(f"  settings: the environment only (no .env in {Path.cwd()}, no AUTHSERVER_ENV_FILE)")
    if settings.ably_keys:
        lines.append(f"  signing key: {settings.ably_keys[0].name} ({len(settings.ably_keys)} key(s) configured)")
    else:
        lines.append(f"  signing key: {_development_key_note(settings)}")
    lines.append(f"  listens on: {_address(settings.host, settings.port)} (--port or AUTHSERVER_PORT)")
    if settings.development:
        lines.append(
            f"  Ably: an embedded sandbox on {_address(settings.host, settings.sandbox_port)}"
            f" ({'AUTHSERVER_SANDBOX_PORT' if settings.sandbox_port_explicit else 'the next port'})"
        )
    else:
        lines.append(f"  Ably: {settings.ably_endpoint or 'real Ably'}")
    if settings.session_secret_ephemeral:
        lines.append(f"  session secret: {_session_secret_note(settings)}")
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
    lines.append(f"  admin API: {_admin_note(settings)}")
    workers = 1 if settings.development else settings.workers
    lines.append(f"  workers: {workers}" + (" (development mode: always one)" if settings.development else ""))
    lines.append(f"  policy: {settings.policy_source} (roles: {', '.join(sorted(settings.policy.roles))})")
    level, note = ably_js_note(settings)
    lines.append(f"  {'WARNING: ' if level >= logging.WARNING else ''}ably-js for the page: {note}")
    lines.extend(_provider_lines(settings))
    lines.extend(f"  WARNING: {warning}" for warning in short_ttl_warnings(settings))
    if settings.demo_login:
        lines.append("  WARNING: demo login is ON: any username and password logs in. NOT FOR PRODUCTION.")
    lines.extend(_edge_lines(settings))
    return lines


def _address(host: str, port: int) -> str:
    return f"http://{url_host(host)}:{port}" if port else f"{url_host(host)}, any free port"


def _edge_lines(settings: Settings) -> list[str]:
    """What ``check`` says about proxies, hosts, connection limits and logs."""
    from authserver.server.guard import DESCRIPTOR_RESERVE

    limits = connection_limits(settings)
    proxies = ", ".join(settings.trusted_proxies) or "none (X-Forwarded-* ignored)"
    lines = [
        f"  trusted proxies: {proxies}",
        f"  allowed hosts: {', '.join(settings.allowed_hosts) or 'any'}",
        f"  connections: at most {limits.connection_cap()} open, headers within {limits.header_timeout:g}s"
        f" and {limits.max_header_bytes} bytes, bodies within {limits.body_timeout:g}s",
        "  admission: " + _admission(limits),
        f"  logs: {settings.log_format}, level {settings.log_level}",
        "  metrics: GET /metrics "
        + (
            "wants Authorization: Bearer <AUTHSERVER_METRICS_TOKEN>"
            if settings.metrics_token
            else "open (no AUTHSERVER_METRICS_TOKEN)"
        ),
    ]
    metrics_warning = open_metrics_warning(settings, settings.host)
    if metrics_warning is not None:
        lines.append(f"  WARNING: {metrics_warning}")
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


def _admission(limits: ConnectionLimits) -> str:
    from authserver.server.guard import MIN_LIMIT

    if not limits.max_in_flight:
        return "off (AUTHSERVER_MAX_IN_FLIGHT=0): token requests queue under overload"
    if not limits.max_queue_delay or limits.max_in_flight <= MIN_LIMIT:  # nothing left to adapt
        return f"/auth and /token answered 503 past {limits.max_in_flight} requests in flight per process"
    ceiling = limits.max_in_flight
    return (
        f"/auth and /token answered 503 past {ceiling} requests in flight per process, or past a limit of"
        f" requests queued for the event loop that adapts ({min(MIN_LIMIT, ceiling)} to {ceiling}) to keep"
        f" their wait under {limits.max_queue_delay * 1000:g} ms"
    )


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


def _session_secret_note(settings: Settings) -> str:
    """Which secret signs the cookies when SESSION_SECRET is not set."""
    path = development_session_secret_path(settings.database_path) if settings.development else None
    if path is None:
        return "ephemeral (SESSION_SECRET is not set; sessions end when the service stops)"
    return f"the development one, kept in {path} beside the development key (sessions survive restarts)"


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
        accounts, outside = with_users(settings, inspect)
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


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = sub.add_parser("check", help="validate the configuration; exit 0 when it is usable")
    check.add_argument(
        "--online", action="store_true", help="also fetch each identity provider's discovery document and keys"
    )
    check.add_argument("--dev", action="store_true", help="as serve --dev: development mode when no ABLY_API_KEY")
    check.add_argument("--host", help="as serve --host: the interface to report")
    check.add_argument("--port", type=int, help="as serve --port: the port to report (the sandbox follows)")
