"""Settings: read once at start-up from the environment and an optional ``.env`` file.

This is the only module that reads ``os.environ`` or ``.env``. The environment wins over the file.
Every problem is collected and reported together in one :class:`ConfigError` that names the
setting and never repeats a secret's value.

Where things are:

- the ``.env`` file is ``AUTHSERVER_ENV_FILE`` when that is set in the environment (it must exist),
  else ``.env`` in the working directory when there is one;
- a relative path read from the ``.env`` file (``DATABASE_URL``'s SQLite file, ``AUTHSERVER_POLICY``,
  ``ABLY_JS_PATH``) is relative to that file's directory, so the service finds the same files from
  wherever it is started; one from the environment is relative to the working directory;
- the default database, ``authserver.db``, sits beside the ``.env`` file that was read, or in the
  working directory when there is none. :attr:`Settings.database_path` is always absolute.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from dotenv import dotenv_values

from authserver.core.capabilities import Capability
from authserver.core.issuers import UpstreamConfigError, UpstreamIssuer, check_distinct_client_ids, make_issuer
from authserver.core.keys import AblyKey, parse_api_keys
from authserver.core.policy import Policy, load_policy
from authserver.errors import AuthServerError, ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "sqlite:///authserver.db"
DEFAULT_ENV_FILE = ".env"
DEFAULT_ABLY_JS_PATH = REPO_ROOT / ".cache" / "node" / "node_modules" / "ably"
MIN_TOKEN_TTL = 5  # seconds: short lifetimes are for end-to-end tests of renewal
HARD_MAX_TOKEN_TTL = 86400  # Ably's ceiling for access tokens (24 h)
#: Ably prompts a client to renew (AUTH, action 17) about this long before its token expires, and
#: only then: a token that lives less gets no prompt (ably-spec 8.1).
ABLY_AUTH_LEAD = 30
#: Below this TOKEN_TTL, `check` and `serve` warn that renewal on real Ably goes by reconnecting.
SHORT_TOKEN_TTL = 35
MIN_SESSION_SECRET = 32
MIN_METRICS_TOKEN = 32
#: The most requests in flight per process before /auth and /token are shed (``AUTHSERVER_MAX_IN_FLIGHT``),
#: and the queue delay the admission limit keeps under (``AUTHSERVER_MAX_QUEUE_DELAY_MS``): see
#: bench/README.md's open-loop runs and docs/reconnect-storms.md for how they were chosen.
DEFAULT_MAX_IN_FLIGHT = 512
DEFAULT_MAX_QUEUE_DELAY_MS = 5

CookieSecure = Literal["auto", "true", "false"]
AblyJsSource = Literal["cdn", "local"]
LogFormat = Literal["text", "json"]
Environment = Literal["development", "production"]

#: Every setting, with its meaning: rendered into ``authserver check`` and kept in step with env.example.
SETTINGS_HELP: dict[str, str] = {
    "AUTHSERVER_ENV_FILE": "the .env file to read (environment only; default: .env in the working directory)",
    "ABLY_API_KEY": "appId.keyId:secret (comma-separated for rotation; the first signs). Unset: refused, unless"
    " AUTHSERVER_ENV=development",
    "AUTHSERVER_ENV": "production (default) or development: with no ABLY_API_KEY, an embedded Ably sandbox, demo login"
    " and a development session secret (NOT for production; ignored when ABLY_API_KEY is set; serve --dev: the same)",
    "ABLY_KEY_CAPABILITY": "JSON capability of the key, the ceiling for every token (unset: unrestricted)",
    "ABLY_ENDPOINT": "where Ably is: unset = real Ably; http://host:port = a sandbox",
    "AUTHSERVER_HOST": "interface to listen on (default 127.0.0.1)",
    "AUTHSERVER_PORT": "port to listen on (default 8000)",
    "AUTHSERVER_SANDBOX_PORT": "port of the embedded sandbox in development mode (default AUTHSERVER_PORT + 1)",
    "TOKEN_TTL": "default token lifetime in seconds (default 3600, at least 5)",
    "TOKEN_MAX_TTL": "longest token lifetime in seconds (default and hard ceiling 86400)",
    "DATABASE_URL": "accounts and sessions: sqlite:///file.db (default sqlite:///authserver.db, beside the .env"
    " file) or postgresql://user:password@host:port/database",
    "SESSION_SECRET": "secret that signs session cookies, at least 32 characters (required with ABLY_API_KEY)",
    "AUTHSERVER_SESSION_TTL": "how long a login session lasts, in seconds (default 28800)",
    "AUTHSERVER_POLICY": "policy file (TOML or JSON) mapping roles to capabilities (default: the built-in policy)",
    "AUTHSERVER_DEMO_LOGIN": "true: any username/password logs in (NOT for production)",
    "AUTHSERVER_COOKIE_SECURE": "auto (Secure when the request is HTTPS; the provider login's flow cookie when"
    " AUTHSERVER_PUBLIC_URL is https), true or false",
    "AUTHSERVER_ALLOWED_ORIGINS": "trusted front-end origins (comma-separated): CORS on /auth, /token, /session,"
    " /login, /logout, and allowed to POST /login and /logout",
    "OIDC_ISSUER": "an OpenID Connect provider whose tokens are accepted as Authorization: Bearer (https; more in"
    " the policy file's [[issuers]])",
    "OIDC_AUDIENCE": "the aud the provider's tokens must carry (required with OIDC_ISSUER; comma-separated: any of)",
    "OIDC_CLIENT_ID_CLAIM": "the claim that becomes the Ably clientId (default sub)",
    "OIDC_CLIENT_ID_PREFIX": "prepended to that claim's value (e.g. acme.); with several trusted issuers, every one but"
    " one needs a prefix (unset: none)",
    "OIDC_ROLE_CLAIM": "optional claim (string or list) whose first value naming a policy role picks the role",
    "OIDC_CLIENT_ID": "client id registered at OIDC_ISSUER for the page's 'Log in with' button (code flow + PKCE)",
    "OIDC_CLIENT_SECRET": "its client secret, for a confidential client (unset: a public client, PKCE only)",
    "OIDC_PROVIDER_NAME": "the provider's name on the login button (default: the issuer's host name)",
    "AUTHSERVER_PUBLIC_URL": "the address browsers reach the service at, https://host[:port] (required with"
    " OIDC_CLIENT_ID: the redirect_uri sent to the provider is built from it, never from a Host header)",
    "OIDC_BACKCHANNEL_LOGOUT_AUDIENCE": "client id(s) OIDC_ISSUER puts in the aud of its back-channel logout tokens"
    " (comma-separated): switches on POST /oidc/backchannel-logout for it (unset: off; usually OIDC_CLIENT_ID)",
    "OIDC_LEEWAY": "seconds of clock skew allowed on exp, nbf and iat of upstream tokens (default 30, at most 300)",
    "ABLY_JS": "where the login page loads ably-js from: local (the npm copy; default when installed) or cdn",
    "ABLY_JS_PATH": "directory of the npm ably package (default: .cache/node/node_modules/ably of the checkout)",
    "AUTHSERVER_LOG_LEVEL": "debug, info, warning or error (default info)",
    "AUTHSERVER_LOGIN_FAILURES": "failed logins allowed per username and address in the window (default 10)",
    "AUTHSERVER_LOGIN_FAILURES_PER_ADDRESS": "failed logins allowed per address in the window (default 50)",
    "AUTHSERVER_LOGIN_FAILURE_WINDOW": "the failed-login window in seconds (default 300)",
    "AUTHSERVER_LOGIN_CONCURRENCY": "password checks run at once per process (default: the CPU count, at least 2)",
    "AUTHSERVER_LOGIN_QUEUE": "logins that may wait for a password check before 503 (default 64)",
    "AUTHSERVER_PASSWORD_MIN_LENGTH": "shortest password `users add`/`set-password`/the admin API accept, in"
    " characters (default 8, 8..64); common passwords are refused at any length (NIST SP 800-63B)",
    "REDIS_URL": "redis://[:password@]host:port/db: share limits and session changes across workers and machines",
    "AUTHSERVER_AUTH_RATE_PER_IDENTITY": "limit on /auth per clientId, e.g. 120/minute (default: none)",
    "AUTHSERVER_AUTH_RATE_PER_ADDRESS": "limit on /auth per client address, e.g. 600/minute (default: none)",
    "AUTHSERVER_WORKERS": "worker processes of `serve` (default 1; development mode is always 1)",
    "AUTHSERVER_SESSION_RECHECK": "seconds a resolved session is answered from memory (default 1)",
    "AUTHSERVER_LOG_FORMAT": "text (default) or json: one JSON object per line, uvicorn's lines included",
    "AUTHSERVER_TRUSTED_PROXIES": "proxies whose X-Forwarded-For/-Proto are believed (comma-separated IPs or CIDRs)",
    "AUTHSERVER_ALLOWED_HOSTS": "Host names the service answers to, optionally host:port or *.domain (unset: any)",
    "AUTHSERVER_HEADER_TIMEOUT": "seconds a client has to send a request's headers (default 10)",
    "AUTHSERVER_BODY_TIMEOUT": "seconds a client has to send a request's body (default 10)",
    "AUTHSERVER_MAX_CONNECTIONS": "connections per process; beyond, the oldest idle one closes (0: ulimit -n - 128)",
    "AUTHSERVER_MAX_IN_FLIGHT": "the most requests in flight per process (whole request in, answer not sent)"
    " before /auth and /token get 503 with Retry-After at once, probes never"
    f" (default {DEFAULT_MAX_IN_FLIGHT}; 0: admission off)",
    "AUTHSERVER_MAX_QUEUE_DELAY_MS": "the admission limit adapts below AUTHSERVER_MAX_IN_FLIGHT to keep the wait of a"
    f" ready request for the event loop under this (default {DEFAULT_MAX_QUEUE_DELAY_MS}; 0: a fixed limit)",
    "AUTHSERVER_MAX_HEADER_BYTES": "largest request line plus headers, in bytes; larger gets 431 (default 16384)",
    "AUTHSERVER_METRICS_TOKEN": "GET /metrics then wants Authorization: Bearer <this>, at least 32 characters"
    " (unset: /metrics is open)",
    "ABLY_REVOCABLE_TOKENS": "true (default): tokens carry x-ably-revocation-key, live at most 1 h, and logout,"
    " password changes, disabling... revoke them through Ably (the key needs revocable tokens enabled)",
    "TOKEN_IAT_MARGIN": "seconds a token's iat is back-dated, for a clock ahead of Ably's (default 5, 0..60)",
    "ABLY_TIME_SYNC": "true: measure the offset to Ably's /time at start and every 10 minutes, and apply it",
    "ABLY_TIME_SYNC_MAX_OFFSET": "seconds of offset to Ably's clock beyond which /readyz fails (default 30)",
    "AUTHSERVER_ADMIN_API": "auto (default: /admin/v1 answers once an admin API key exists or AUTHSERVER_ADMIN_ROLE"
    " is set) or off",
    "AUTHSERVER_ADMIN_ROLE": "a provider token whose role claim (OIDC_ROLE_CLAIM) carries this value may use the admin"
    " API (unset: no provider token may)",
    "AUTHSERVER_ADMIN_RATE": "admin API calls allowed per credential, e.g. 120/minute (the default)",
    "AUTHSERVER_PROVIDER_LOGIN_RATE": "provider logins (GET /login/oidc) one address may start, e.g. 30/minute"
    " (the default): each keeps a flow's state for 10 minutes",
}

#: Which setting an issuer problem from OIDC_ISSUER's settings is about (by a word of its message).
_ISSUER_SETTINGS = (("audience", "OIDC_AUDIENCE"), ("client_id_prefix", "OIDC_CLIENT_ID_PREFIX"))
#: The prefixes of the service's settings: an unknown name with one of them is taken for a misspelling.
SETTING_PREFIXES = ("AUTHSERVER_", "ABLY_", "OIDC_", "TOKEN_", "SESSION_", "DATABASE_", "REDIS_")
#: Names with those prefixes that belong to others: the test harness's, and the X session manager's.
NOT_SETTINGS = frozenset({"AUTHSERVER_REQUIRE_E2E", "ABLY_JS_NODE_MODULES", "SESSION_MANAGER"})
#: How alike (difflib's ratio) a name must be to a setting to be named as the setting meant; one without
#: those prefixes is taken for a misspelling only when it is this alike.
SUGGESTION_CUTOFF = 0.8
MISSPELLING_CUTOFF = 0.85
NO_KEY_PROBLEM = (
    "ABLY_API_KEY: not set. Set it to your Ably key (appId.keyId:secret), or ask for development mode"
    " (an embedded Ably sandbox with demo login; never for production) by name: AUTHSERVER_ENV=development"
    " or `authserver serve --dev`"
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """Validated configuration. Secrets are excluded from the repr."""

    ably_keys: tuple[AblyKey, ...] = ()
    key_capability: Capability | None = None
    ably_endpoint: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    sandbox_port: int = 8001
    #: AUTHSERVER_SANDBOX_PORT was set: the sandbox stays there when ``serve --port`` moves the service.
    sandbox_port_explicit: bool = False
    token_ttl: int = 3600
    token_max_ttl: int = HARD_MAX_TOKEN_TTL
    database_url: str = DEFAULT_DATABASE_URL
    #: The SQLite file ``database_url`` names, made absolute (or ``:memory:``); "" for PostgreSQL.
    database_path: str = "authserver.db"
    #: "sqlite" or "postgresql".
    database_engine: str = "sqlite"
    session_secret: str = field(default="", repr=False)
    session_secret_ephemeral: bool = False
    session_ttl: int = 28800
    policy: Policy = field(default_factory=lambda: load_policy(None))
    policy_source: str = "built-in"
    demo_login: bool = False
    cookie_secure: CookieSecure = "auto"
    allowed_origins: tuple[str, ...] = ()
    ably_js: AblyJsSource = "cdn"
    #: ABLY_JS was set; otherwise ``ably_js`` is "local" exactly when the npm copy is installed.
    ably_js_explicit: bool = False
    ably_js_path: Path = DEFAULT_ABLY_JS_PATH
    log_level: str = "info"
    login_failures: int = 10
    login_failures_per_address: int = 50
    login_failure_window: int = 300
    login_concurrency: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    login_queue: int = 64
    #: The shortest password an account may be given (characters); NIST SP 800-63B: at least 8.
    password_min_length: int = 8
    #: REDIS_URL, or None: one process's own limits and session memory.
    redis_url: str | None = field(default=None, repr=False)
    #: Limits on /auth in the ``limits`` notation ("120/minute"), or None (off).
    auth_rate_per_identity: str | None = None
    auth_rate_per_address: str | None = None
    workers: int = 1
    session_recheck: float = 1.0
    #: No ABLY_API_KEY, and development asked for by name (AUTHSERVER_ENV=development or ``serve --dev``):
    #: development mode, with an embedded sandbox under ``serve``.
    development: bool = False
    #: What AUTHSERVER_ENV (or ``serve --dev``) asked for; a key makes it production whatever this says.
    environment: Environment = "production"
    #: Names set that look like misspelled settings, each with the closest setting (see :func:`misspellings`).
    misspelled: tuple[str, ...] = ()
    #: The ``.env`` file the settings were read from (absolute), or None.
    env_file: Path | None = None
    log_format: LogFormat = "text"
    #: Networks whose X-Forwarded-For/-Proto are believed (``ip_network`` strings).
    trusted_proxies: tuple[str, ...] = ()
    #: Host patterns as TrustedHostMiddleware takes them (plus an optional ``:port``); empty: any.
    allowed_hosts: tuple[str, ...] = ()
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_connections: int = 0
    max_header_bytes: int = 16 * 1024
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    max_queue_delay_ms: int = DEFAULT_MAX_QUEUE_DELAY_MS
    #: The bearer token ``GET /metrics`` wants, or None: /metrics is open to whoever reaches the port.
    metrics_token: str | None = field(default=None, repr=False)
    #: Trusted OpenID Connect providers: OIDC_ISSUER first, then the policy's ``[[issuers]]``.
    oidc_issuers: tuple[UpstreamIssuer, ...] = ()
    #: The page's "Log in with <provider>" client at OIDC_ISSUER (None: no button).
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = field(default=None, repr=False)
    #: Where browsers reach the service (scheme://host[:port], no trailing slash), or None.
    public_url: str | None = None

    @property
    def provider_login(self) -> str | None:
        """The provider's name for the page's "Log in with" button (None: no button)."""
        if self.oidc_client_id and self.oidc_issuers:
            return self.oidc_issuers[0].display_name
        return None

    revocable_tokens: bool = True
    iat_margin: int = 5
    #: AUTHSERVER_ADMIN_API: False switches the admin API off entirely (no routes).
    admin_api: bool = True
    #: The role value a provider token needs for the admin API (None: no provider token is an admin).
    admin_role: str | None = None
    #: Admin API calls per credential, in the ``limits`` notation.
    admin_rate: str = "120/minute"
    #: Provider logins one client address may start, in the ``limits`` notation.
    provider_login_rate: str = "30/minute"
    time_sync: bool = False
    time_sync_max_offset: int = 30

    def with_port(self, port: int) -> Settings:
        """The service moved to ``port`` (``serve --port``): the sandbox follows, to ``port + 1``,
        unless AUTHSERVER_SANDBOX_PORT names its own port."""
        if self.sandbox_port_explicit:
            return replace(self, port=port)
        return replace(self, port=port, sandbox_port=_next_port(port))

    def with_sandbox(self, key: AblyKey, endpoint: str, session_secret: str | None = None) -> Settings:
        """These settings pointed at a development sandbox that accepts ``key``; ``session_secret``: the
        development session secret, used when SESSION_SECRET is not set."""
        pointed = replace(self, ably_keys=(key,), ably_endpoint=endpoint, key_capability=None)
        if session_secret is None or not self.session_secret_ephemeral:
            return pointed
        return replace(pointed, session_secret=session_secret, session_secret_ephemeral=False)


def database_engine(url: str) -> str:
    """``sqlite`` or ``postgresql``, from the URL's scheme. :raises ConfigError: any other (never echoing the URL)."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ConfigError(["DATABASE_URL: the PostgreSQL URL has an invalid port"]) from None
        if not parts.path.strip("/"):
            raise ConfigError(["DATABASE_URL: the PostgreSQL URL names no database (postgresql://user@host:port/NAME)"])
        return "postgresql"
    raise ConfigError(
        ["DATABASE_URL must be sqlite:///path/to/file.db or postgresql://user:password@host:port/database"]
    )


def sqlite_path(url: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``sqlite:///:memory:`` -> a sqlite3 path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ConfigError([f"DATABASE_URL must start with {prefix!r} for SQLite"])
    path = url[len(prefix) :]
    if not path:
        raise ConfigError(["DATABASE_URL has no file path after sqlite:///"])
    return path


def short_ttl_warning(token_ttl: int, what: str = "TOKEN_TTL") -> str | None:
    """Why tokens this short behave differently on real Ably, or None when they do not."""
    if token_ttl >= SHORT_TOKEN_TTL:
        return None
    return (
        f"{what}={token_ttl}s is under {SHORT_TOKEN_TTL}s: real Ably asks a client to renew (AUTH) only"
        f" {ABLY_AUTH_LEAD}s before its token expires, so a token this short gets no in-band renewal and is"
        " renewed by reconnecting (DISCONNECTED 40142 at every expiry); ably-python does that only once"
        " (the second expiry leaves it reconnecting with the stale token). Use short TTLs for tests only."
    )


def short_ttl_warnings(settings: Settings) -> list[str]:
    """:func:`short_ttl_warning` for TOKEN_TTL, and for each role whose ``max_ttl`` cuts its tokens shorter."""
    warnings = [short_ttl_warning(settings.token_ttl)]
    for name, role in sorted(settings.policy.roles.items()):
        if role.max_ttl is not None and role.max_ttl < settings.token_ttl:
            warnings.append(short_ttl_warning(role.max_ttl, f"role {name!r} max_ttl"))
    return [warning for warning in warnings if warning is not None]


def open_metrics_warning(settings: Settings, host: str) -> str | None:
    """Why ``GET /metrics`` is exposed when the service listens on ``host``, or None: it wants a
    token, or ``host`` is a loopback address (a host name counts as exposed: it may resolve anywhere)."""
    if settings.metrics_token is not None or _loopback(host):
        return None
    return (
        f"/metrics is open to anyone who reaches {host}:{settings.port} (AUTHSERVER_HOST is not a loopback"
        " address): set AUTHSERVER_METRICS_TOKEN, or keep the port off the public network and /metrics"
        " out of the proxy"
    )


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _next_port(port: int) -> int:
    return port + 1 if 0 < port < 65535 else 0


def find_env_file(environ: Mapping[str, str], default: str | Path | None = DEFAULT_ENV_FILE) -> Path | None:
    """The ``.env`` file to read: AUTHSERVER_ENV_FILE (which must exist), else ``default`` if it exists.

    :raises ConfigError: AUTHSERVER_ENV_FILE names no file.
    """
    explicit = environ.get("AUTHSERVER_ENV_FILE", "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError([f"AUTHSERVER_ENV_FILE: no such file: {str(path.absolute())!r}"])
        return path.absolute()
    if default is not None and Path(default).is_file():
        return Path(default).absolute()
    return None


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: str | Path | None = DEFAULT_ENV_FILE,
    *,
    need_session_secret: bool = True,
    development: bool = False,
) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``) over the ``.env`` file.

    :param env_file: the ``.env`` to read when it exists (AUTHSERVER_ENV_FILE in ``environ`` wins);
        ``None``: none.
    :param need_session_secret: the caller serves logins (``serve``, ``check``), so production mode
        needs SESSION_SECRET; commands that never sign a cookie (``token``, ``sandbox``, ``users``) pass False.
    :param development: development mode asked for on the command line (``serve --dev``), as
        AUTHSERVER_ENV=development asks for it.
    :raises ConfigError: naming every missing or invalid setting at once (and the names that look
        like misspelled settings, which otherwise are in :attr:`Settings.misspelled`).
    """
    environ = os.environ if environ is None else environ
    path = find_env_file(environ, env_file)
    from_file: dict[str, str] = {}
    if path is not None:
        from_file = {k: v for k, v in dotenv_values(path).items() if v is not None}
    values = {**from_file, **environ}
    file_names = {name for name in from_file if name not in environ}
    if development:
        values["AUTHSERVER_ENV"] = "development"
    reader = _Reader(values, env_file=path, from_file=file_names, need_session_secret=need_session_secret)
    return reader.settings()


#: The variables Kubernetes injects for each Service of the namespace (``REDIS_SERVICE_HOST``,
#: ``REDIS_PORT_6379_TCP_ADDR``...): never a misspelling, though they share the settings' prefixes.
_SERVICE_LINK = re.compile(r"^[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT_\d+_(TCP|UDP|SCTP)(_[A-Z]+)?)$")


def misspellings(names: Iterable[str]) -> list[str]:
    """What is wrong with the ``names`` that are set but are no setting and look like one: those with
    a prefix of the service's settings, and those very like a setting whatever their prefix.

    Each says the closest setting when there is one ("TOKEN_TLL: not a setting; did you mean TOKEN_TTL?").
    """
    found = []
    for name in sorted(names):
        upper = name.upper()
        if name in SETTINGS_HELP or name in NOT_SETTINGS or _SERVICE_LINK.match(upper):
            continue
        prefixed = upper.startswith(SETTING_PREFIXES)
        close = difflib.get_close_matches(
            upper, SETTINGS_HELP, n=1, cutoff=SUGGESTION_CUTOFF if prefixed else MISSPELLING_CUTOFF
        )
        if close:
            found.append(f"{name}: not a setting of authserver; did you mean {close[0]}?")
        elif prefixed:
            found.append(f"{name}: not a setting of authserver (see env.example for every setting)")
    return found


class _Reader:
    def __init__(
        self,
        values: Mapping[str, str],
        *,
        env_file: Path | None = None,
        from_file: set[str] | frozenset[str] = frozenset(),
        need_session_secret: bool = True,
    ) -> None:
        self.values = {k: v.strip() for k, v in values.items()}
        self.problems: list[str] = []
        self.env_file = env_file
        self.from_file = from_file
        self.need_session_secret = need_session_secret
        #: Where defaults live: beside the .env file, or the working directory.
        self.home = env_file.parent if env_file is not None else Path.cwd()

    def path(self, name: str, value: str) -> Path:
        """``value`` as an absolute path: relative to the .env file when it came from there."""
        path = Path(value).expanduser()
        if not path.is_absolute():
            base = self.env_file.parent if self.env_file is not None and name in self.from_file else Path.cwd()
            path = base / path
        return Path(os.path.normpath(path))

    def raw(self, name: str) -> str | None:
        value = self.values.get(name)
        return value if value else None

    def parse(self, name: str, default: T, convert: Callable[[str], T]) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return convert(value)
        except AuthServerError as exc:
            self.problems.append(f"{name}: {exc.message}")
        except ValueError as exc:
            self.problems.append(f"{name}: {exc}")
        return default

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        def convert(value: str) -> int:
            try:
                number = int(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a whole number") from None
            if not low <= number <= high:
                raise ValueError(f"{number} is outside {low}..{high}")
            return number

        return self.parse(name, default, convert)

    def boolean(self, name: str, default: bool) -> bool:
        def convert(value: str) -> bool:
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            raise ValueError(f"{value!r} is not true or false")

        return self.parse(name, default, convert)

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> str:
        def convert(value: str) -> str:
            if value.lower() not in options:
                raise ValueError(f"{value!r} is not one of {', '.join(options)}")
            return value.lower()

        return self.parse(name, default, convert)

    def database(self, url: str) -> tuple[str, str]:
        """(the absolute SQLite path or "" for a server, the engine) of DATABASE_URL."""
        try:
            engine = database_engine(url)
            if engine == "postgresql":
                return "", engine
            path = sqlite_path(url)
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return ":memory:", "sqlite"
        if path == ":memory:":
            return path, engine
        if self.raw("DATABASE_URL") is None:
            path = str(self.home / path)
        path = str(self.path("DATABASE_URL", path))
        if not Path(path).parent.is_dir():
            self.problems.append(f"DATABASE_URL: the directory of the database file does not exist ({path})")
        return path, engine

    def oidc_issuers(self, policy: Policy) -> tuple[UpstreamIssuer, ...]:
        issuer = self.raw("OIDC_ISSUER")
        from_env: tuple[UpstreamIssuer, ...] = ()
        if issuer is None:
            for name in (
                "OIDC_AUDIENCE",
                "OIDC_CLIENT_ID_CLAIM",
                "OIDC_CLIENT_ID_PREFIX",
                "OIDC_ROLE_CLAIM",
                "OIDC_CLIENT_ID",
                "OIDC_BACKCHANNEL_LOGOUT_AUDIENCE",
            ):
                if self.raw(name) is not None:
                    self.problems.append(f"{name}: set OIDC_ISSUER too (it belongs to the issuer OIDC_ISSUER names)")
        else:
            audience = [a.strip() for a in (self.raw("OIDC_AUDIENCE") or "").split(",") if a.strip()]
            leeway = self.integer("OIDC_LEEWAY", 30, 0, 300)
            logout = [a.strip() for a in (self.raw("OIDC_BACKCHANNEL_LOGOUT_AUDIENCE") or "").split(",") if a.strip()]
            try:
                from_env = (
                    make_issuer(
                        issuer=issuer,
                        audience=audience,
                        client_id_claim=self.raw("OIDC_CLIENT_ID_CLAIM"),
                        client_id_prefix=self.raw("OIDC_CLIENT_ID_PREFIX"),
                        role_claim=self.raw("OIDC_ROLE_CLAIM"),
                        leeway=leeway,
                        name=self.raw("OIDC_PROVIDER_NAME"),
                        logout_audience=logout,
                    ),
                )
            except UpstreamConfigError as exc:
                name = next((n for w, n in _ISSUER_SETTINGS if w in str(exc)), "OIDC_ISSUER")
                self.problems.append(f"{name}: {exc}")
            if self.raw("OIDC_CLIENT_SECRET") is not None and self.raw("OIDC_CLIENT_ID") is None:
                self.problems.append("OIDC_CLIENT_SECRET: set OIDC_CLIENT_ID too")
        listed = tuple(i for i in policy.issuers if all(i.issuer != e.issuer for e in from_env))
        try:
            check_distinct_client_ids(from_env + listed)
        except UpstreamConfigError as exc:
            self.problems.append(f"OIDC_ISSUER: {exc}")
        return from_env + listed

    def settings(self) -> Settings:
        # The fields are read in the order of Settings, so the problems are listed in that order too.
        found = self.basics()
        settings = Settings(**self.service(found), **self.edge(), **self.features(found))
        misspelled = misspellings(name for name, value in self.values.items() if value)
        if self.problems:
            raise ConfigError(self.problems + misspelled)
        return replace(settings, misspelled=tuple(misspelled))

    def basics(self) -> dict[str, Any]:
        """The settings others depend on: keys, ports, token lifetimes, database, policy, secret."""
        keys: tuple[AblyKey, ...] = self.parse("ABLY_API_KEY", (), parse_api_keys)
        key_capability = self.parse("ABLY_KEY_CAPABILITY", None, Capability.parse)
        endpoint = self.parse("ABLY_ENDPOINT", None, _endpoint)
        port = self.integer("AUTHSERVER_PORT", 8000, 0, 65535)
        sandbox_port = self.integer("AUTHSERVER_SANDBOX_PORT", _next_port(port), 0, 65535)
        if port and sandbox_port == port:
            self.problems.append("AUTHSERVER_SANDBOX_PORT: must differ from AUTHSERVER_PORT")
        max_ttl = self.integer("TOKEN_MAX_TTL", HARD_MAX_TOKEN_TTL, MIN_TOKEN_TTL, HARD_MAX_TOKEN_TTL)
        ttl = self.integer("TOKEN_TTL", min(3600, max_ttl), MIN_TOKEN_TTL, HARD_MAX_TOKEN_TTL)
        if ttl > max_ttl:
            self.problems.append(f"TOKEN_TTL: {ttl} is longer than TOKEN_MAX_TTL ({max_ttl})")
        database_url = self.raw("DATABASE_URL") or DEFAULT_DATABASE_URL
        database_path, engine = self.database(database_url)
        policy_file = self.raw("AUTHSERVER_POLICY")
        policy_path = self.path("AUTHSERVER_POLICY", policy_file) if policy_file else None
        policy = self.parse("AUTHSERVER_POLICY", None, lambda p: load_policy(policy_path)) if policy_path else None
        ably_js_value = self.raw("ABLY_JS_PATH")
        ably_js_path = self.path("ABLY_JS_PATH", ably_js_value) if ably_js_value else DEFAULT_ABLY_JS_PATH
        ably_js_installed = (ably_js_path / "build" / "ably.min.js").is_file()
        environment = self.environment(keys)
        production = bool(keys)
        if endpoint is not None and not production and "ABLY_API_KEY" not in {p.split(":")[0] for p in self.problems}:
            self.problems.append("ABLY_ENDPOINT: set ABLY_API_KEY to the key that endpoint accepts")
        secret = self.raw("SESSION_SECRET")
        ephemeral = False
        if secret is None:
            if production and self.need_session_secret:
                self.problems.append("SESSION_SECRET: required when ABLY_API_KEY is set (at least 32 characters)")
            secret, ephemeral = secrets.token_urlsafe(32), True
        elif len(secret) < MIN_SESSION_SECRET:
            self.problems.append(f"SESSION_SECRET: too short (at least {MIN_SESSION_SECRET} characters)")
        demo = self.boolean("AUTHSERVER_DEMO_LOGIN", not production)
        origins: tuple[str, ...] = self.parse("AUTHSERVER_ALLOWED_ORIGINS", (), _origins)
        issuers = self.oidc_issuers(policy or load_policy(None))
        return {
            "keys": keys,
            "key_capability": key_capability,
            "endpoint": endpoint,
            "port": port,
            "sandbox_port": sandbox_port,
            "max_ttl": max_ttl,
            "ttl": ttl,
            "database_url": database_url,
            "database_path": database_path,
            "engine": engine,
            "policy": policy,
            "policy_path": policy_path,
            "ably_js_path": ably_js_path,
            "ably_js_installed": ably_js_installed,
            "production": production,
            "environment": environment,
            "secret": secret,
            "ephemeral": ephemeral,
            "demo": demo,
            "origins": origins,
            "issuers": issuers,
        }

    def environment(self, keys: tuple[AblyKey, ...]) -> Environment:
        """AUTHSERVER_ENV. Without a key, development mode must be asked for by name: a missing key
        is a problem, never a quiet switch to the embedded sandbox and demo login."""
        environment = self.choice("AUTHSERVER_ENV", "production", ("development", "production"))
        if not keys and environment != "development" and not any(p.startswith("ABLY_API_KEY") for p in self.problems):
            self.problems.append(NO_KEY_PROBLEM)
        return "development" if environment == "development" else "production"

    def service(self, found: dict[str, Any]) -> dict[str, Any]:
        """The fields of :class:`Settings` before the edge's, given :meth:`basics`."""
        keys, policy, policy_path, ably_js_path = (
            found["keys"],
            found["policy"],
            found["policy_path"],
            found["ably_js_path"],
        )
        return dict(
            ably_keys=keys,
            key_capability=found["key_capability"],
            ably_endpoint=found["endpoint"],
            host=self.raw("AUTHSERVER_HOST") or "127.0.0.1",
            port=found["port"],
            sandbox_port=found["sandbox_port"],
            sandbox_port_explicit=self.raw("AUTHSERVER_SANDBOX_PORT") is not None,
            token_ttl=found["ttl"],
            token_max_ttl=found["max_ttl"],
            database_url=found["database_url"],
            database_path=found["database_path"],
            database_engine=found["engine"],
            session_secret=found["secret"],
            session_secret_ephemeral=found["ephemeral"],
            session_ttl=self.integer("AUTHSERVER_SESSION_TTL", 28800, 60, 30 * 86400),
            policy=policy or load_policy(None),
            policy_source=str(policy_path) if policy_path else "built-in",
            demo_login=found["demo"],
            cookie_secure=self.choice("AUTHSERVER_COOKIE_SECURE", "auto", ("auto", "true", "false")),
            allowed_origins=found["origins"],
            ably_js=self.choice("ABLY_JS", "local" if found["ably_js_installed"] else "cdn", ("cdn", "local")),
            ably_js_explicit=self.raw("ABLY_JS") is not None,
            ably_js_path=ably_js_path,
            log_level=self.choice("AUTHSERVER_LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            login_failures=self.integer("AUTHSERVER_LOGIN_FAILURES", 10, 1, 1_000_000),
            login_failures_per_address=self.integer("AUTHSERVER_LOGIN_FAILURES_PER_ADDRESS", 50, 1, 1_000_000),
            login_failure_window=self.integer("AUTHSERVER_LOGIN_FAILURE_WINDOW", 300, 1, 86400),
            login_concurrency=self.integer("AUTHSERVER_LOGIN_CONCURRENCY", max(2, os.cpu_count() or 2), 1, 1024),
            login_queue=self.integer("AUTHSERVER_LOGIN_QUEUE", 64, 0, 100_000),
            password_min_length=self.integer("AUTHSERVER_PASSWORD_MIN_LENGTH", 8, 8, 64),
            redis_url=self.parse("REDIS_URL", None, _redis_url),
            auth_rate_per_identity=self.parse("AUTHSERVER_AUTH_RATE_PER_IDENTITY", None, _rate),
            auth_rate_per_address=self.parse("AUTHSERVER_AUTH_RATE_PER_ADDRESS", None, _rate),
            workers=self.integer("AUTHSERVER_WORKERS", 1, 1, 64),
            session_recheck=float(self.integer("AUTHSERVER_SESSION_RECHECK", 1, 0, 3600)),
            development=not found["production"],
            environment=found["environment"],
            env_file=self.env_file,
        )

    def features(self, found: dict[str, Any]) -> dict[str, Any]:
        """The fields of :class:`Settings` after the edge's: providers, revocation, time sync."""
        issuers = found["issuers"]
        client_id = self.raw("OIDC_CLIENT_ID") if issuers else None
        public_url = self.parse("AUTHSERVER_PUBLIC_URL", None, _public_url)
        if client_id and public_url is None and self.raw("AUTHSERVER_PUBLIC_URL") is None:
            self.problems.append(
                "AUTHSERVER_PUBLIC_URL: required with OIDC_CLIENT_ID (the address browsers use, e.g."
                " https://chat.example.com: the provider sends its users back to <it>/login/oidc/callback)"
            )
        return dict(
            oidc_issuers=issuers,
            oidc_client_id=client_id,
            oidc_client_secret=self.raw("OIDC_CLIENT_SECRET"),
            public_url=public_url,
            revocable_tokens=self.boolean("ABLY_REVOCABLE_TOKENS", True),
            iat_margin=self.integer("TOKEN_IAT_MARGIN", 5, 0, 60),
            time_sync=self.boolean("ABLY_TIME_SYNC", False),
            time_sync_max_offset=self.integer("ABLY_TIME_SYNC_MAX_OFFSET", 30, 1, 3600),
            admin_api=self.choice("AUTHSERVER_ADMIN_API", "auto", ("auto", "off")) == "auto",
            admin_role=self.admin_role(issuers),
            admin_rate=self.parse("AUTHSERVER_ADMIN_RATE", "120/minute", _rate),
            provider_login_rate=self.parse("AUTHSERVER_PROVIDER_LOGIN_RATE", "30/minute", _rate),
        )

    def admin_role(self, issuers: tuple[UpstreamIssuer, ...]) -> str | None:
        role = (self.raw("AUTHSERVER_ADMIN_ROLE") or "").strip() or None
        if role is not None and not any(issuer.role_claim for issuer in issuers):
            self.problems.append(
                "AUTHSERVER_ADMIN_ROLE: no trusted provider has a role claim to carry it (set OIDC_ROLE_CLAIM,"
                " or role_claim in the policy's [[issuers]])"
            )
        return role

    def edge(self) -> dict[str, Any]:
        """The settings of the edge: logs, proxies, hosts and connection limits."""
        none: tuple[str, ...] = ()
        return {
            "log_format": self.choice("AUTHSERVER_LOG_FORMAT", "text", ("text", "json")),
            "trusted_proxies": self.parse("AUTHSERVER_TRUSTED_PROXIES", none, _networks),
            "allowed_hosts": self.parse("AUTHSERVER_ALLOWED_HOSTS", none, _host_patterns),
            "header_timeout": float(self.integer("AUTHSERVER_HEADER_TIMEOUT", 10, 1, 300)),
            "body_timeout": float(self.integer("AUTHSERVER_BODY_TIMEOUT", 10, 1, 300)),
            "max_connections": self.integer("AUTHSERVER_MAX_CONNECTIONS", 0, 0, 1_000_000),
            "max_header_bytes": self.integer("AUTHSERVER_MAX_HEADER_BYTES", 16 * 1024, 1024, 1024 * 1024),
            "max_in_flight": self.integer("AUTHSERVER_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT, 0, 100_000),
            "max_queue_delay_ms": self.integer("AUTHSERVER_MAX_QUEUE_DELAY_MS", DEFAULT_MAX_QUEUE_DELAY_MS, 0, 10_000),
            "metrics_token": self.metrics_token(),
        }

    def metrics_token(self) -> str | None:
        token = self.raw("AUTHSERVER_METRICS_TOKEN")
        if token is not None and len(token) < MIN_METRICS_TOKEN:
            self.problems.append(f"AUTHSERVER_METRICS_TOKEN: too short (at least {MIN_METRICS_TOKEN} characters)")
        return token


def _networks(value: str) -> tuple[str, ...]:
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if item:
            try:
                networks.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ValueError(f"{item[:60]!r} is not an IP address or CIDR network") from None
    return tuple(networks)


_HOST_PATTERN = re.compile(r"(\*|(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(:[0-9]{1,5})?")


def _host_patterns(value: str) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower() for h in value.split(",") if h.strip())
    for host in hosts:
        if not _HOST_PATTERN.fullmatch(host):
            raise ValueError(f"{host[:60]!r} is not a host name, host:port, *.domain or *")
    return hosts


def _endpoint(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s)://host[:port] URL")  # NOTE: never echo: it may hold credentials
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError("must be just scheme://host[:port], without a path, query or user name")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("has an invalid port") from None
    return value.rstrip("/")


_NETLOC = re.compile(r"([a-z0-9]([a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(:[0-9]{1,5})?", re.IGNORECASE)


def _public_url(value: str) -> str:
    """``scheme://host[:port]`` of an absolute http(s) URL whose path is at most "/" (no query, fragment or
    user), without the slash: the base of the redirect_uri the provider login sends."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        raise ValueError("must be an absolute http(s)://host[:port] URL")  # NOTE: never echo: it may hold credentials
    if parts.path not in ("", "/") or "?" in value or "#" in value:
        raise ValueError("must be just scheme://host[:port], without a path, query or fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("has an invalid port") from None
    if not _NETLOC.fullmatch(parts.netloc):
        raise ValueError("must be just scheme://host[:port] (a host name or an IP address)")
    return f"{parts.scheme}://{parts.netloc}"


def _redis_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError("must look like redis://[:password@]host:port/db (or rediss:// for TLS)")  # NOTE: never echo
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("has an invalid port") from None
    if parts.path not in ("", "/") and not parts.path.strip("/").isdigit():
        raise ValueError("names a database that is not a number (redis://host:port/0)")
    if parts.port is None:  # redis-py's default, written out: the rate limits' storage insists on one
        return urlunsplit(parts._replace(netloc=parts.netloc + ":6379"))
    return value


def _rate(value: str) -> str:
    from limits import parse

    try:
        parse(value)
    except ValueError:
        raise ValueError(f"{value[:40]!r} is not a rate such as 120/minute or 1000/hour") from None
    return value


def _origins(value: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/").lower() for o in value.split(",") if o.strip())
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.username:
            raise ValueError("each origin must look like https://example.com (scheme and host only)")
    return origins
