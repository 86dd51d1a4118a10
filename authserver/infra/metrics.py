"""Prometheus metrics: what the rest of the code counts, and ``GET /metrics`` across worker processes.

The app factory takes a :class:`Metrics`; the code calls its methods (``token_issued``,
``login``, ``store_error``...) and never touches prometheus-client itself. ``Metrics()`` keeps its
values in this process (tests, one-process runs); ``Metrics(multiprocess_dir=...)`` writes them to
prometheus-client's per-process files there, and :meth:`Metrics.render` sums every process's
files, so ``/metrics`` on any worker shows the whole service.

``authserver serve`` calls :func:`prepare_multiprocess_dir` in the parent, before workers start:
operators set nothing. Label values are bounded (route templates, Ably codes, known formats), never
raw paths or user input.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

#: prometheus-client reads its multiprocess directory from this variable (in every worker).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_FORMATS = frozenset({"details", "jwt", "tokenrequest", "token-exchange"})
_METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})


def prepare_multiprocess_dir() -> Path:
    """A clean directory for the per-process metric files, exported as PROMETHEUS_MULTIPROC_DIR so
    that workers started after this call inherit it.

    An operator's PROMETHEUS_MULTIPROC_DIR is used (created if missing, emptied of old ``*.db``
    files: stale counts of a previous run would be summed in); otherwise a fresh temporary
    directory, removed when this process exits.
    """
    configured = os.environ.get(MULTIPROC_ENV, "").strip()
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
    else:
        path = Path(tempfile.mkdtemp(prefix="authserver-metrics-"))
        atexit.register(shutil.rmtree, path, True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def multiprocess_dir_from_environment() -> Path | None:
    """The directory :func:`prepare_multiprocess_dir` exported, in a worker; None outside ``serve``."""
    configured = os.environ.get(MULTIPROC_ENV, "").strip()
    return Path(configured) if configured and Path(configured).is_dir() else None


class Metrics:
    """The service's counters and histograms.

    :param multiprocess_dir: None: in-process values (one registry per instance, so several apps in
        one test process never collide); a directory: prometheus-client's multiprocess mode there.
    """

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        if multiprocess_dir is not None:
            os.environ[MULTIPROC_ENV] = str(multiprocess_dir)  # where prometheus-client writes this process's files
            # NOTE: prometheus-client picks its value class when it is first imported; re-pick it
            # now that the directory is known (the CLI imports it before preparing the directory).
            if values.ValueClass is values.MutexValue:
                values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
            self._registry: CollectorRegistry | None = None
        else:
            self._registry = CollectorRegistry()
        self._declare(self._registry)

        #: Labelled children of the per-request series, found once (``labels()`` validates every call).
        self._issued: dict[tuple[str, str], Any] = {}
        self._observed: dict[tuple[str, str, int], Any] = {}
        self._shed: dict[str, Any] = {}  # a storm sheds thousands a second: the shed path stays short

    def _declare(self, registry: CollectorRegistry | None) -> None:
        """The series (None: prometheus-client's multiprocess files)."""
        self.tokens_issued = Counter(
            "authserver_tokens_issued", "Tokens issued by /auth and /token", ["format", "source"], registry=registry
        )
        self.tokens_refused = Counter(
            "authserver_tokens_refused",
            "Token requests refused, by Ably error code",
            ["code", "format"],
            registry=registry,
        )
        self.logins = Counter("authserver_logins", "Login attempts by outcome", ["outcome"], registry=registry)
        self.throttled_requests = Counter(
            "authserver_throttled_requests", "Requests refused by a rate limit (429)", ["endpoint"], registry=registry
        )
        self.request_seconds = Histogram(
            "authserver_request_duration_seconds",
            "Time to answer a request, by route template",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.store_errors = Counter(
            "authserver_store_errors", "Failed database operations", ["operation"], registry=registry
        )
        self.redis_errors = Counter(
            "authserver_redis_errors", "Failed Redis operations", ["operation"], registry=registry
        )
        self.connections_dropped = Counter(
            "authserver_connections_dropped",
            "Connections closed by the connection limits (timeouts, cap, header size)",
            ["reason"],
            registry=registry,
        )
        self.requests_shed = Counter(
            "authserver_requests_shed", "Token requests refused 503 by admission control", ["path"], registry=registry
        )
        self.revocation_batches = Counter(
            "authserver_revocation_batches",
            "revokeTokens calls to Ably, by outcome (delivered, retry, refused)",
            ["outcome"],
            registry=registry,
        )
        self.revocation_targets = Counter(
            "authserver_revocation_targets",
            "Revocation targets sent to Ably, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.clock_offset = Gauge(
            "authserver_ably_clock_offset_seconds",
            "Ably's clock minus this host's, as last measured (ABLY_TIME_SYNC)",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self._declare_providers(registry)

    def _declare_providers(self, registry: CollectorRegistry | None) -> None:
        """The series of the trusted identity providers."""
        self.jwks_fetches = Counter(
            "authserver_jwks_fetches", "JWKS fetches by outcome", ["outcome"], registry=registry
        )
        self.backchannel_logouts = Counter(
            "authserver_backchannel_logouts",
            "Back-channel logout tokens received, by outcome (accepted, refused, unavailable)",
            ["outcome"],
            registry=registry,
        )

    # What the code reports.
    def revocation_batch(self, outcome: str, targets: int) -> None:
        """``outcome``: delivered, retry or refused."""
        self.revocation_batches.labels(outcome).inc()
        self.revocation_targets.labels(outcome).inc(targets)

    def clock_offset_measured(self, seconds: float) -> None:
        self.clock_offset.set(seconds)

    def token_issued(self, fmt: str, source: str) -> None:
        child = self._issued.get((fmt, source))
        if child is None:
            if len(self._issued) > 1000:  # sources are bounded by configuration; a safety net all the same
                self._issued.clear()
            child = self._issued[fmt, source] = self.tokens_issued.labels(_format(fmt), source)
        child.inc()

    def token_refused(self, code: int, fmt: str | None) -> None:
        self.tokens_refused.labels(str(code), _format(fmt)).inc()

    def login(self, outcome: str) -> None:
        """``outcome``: success, failed, throttled, forbidden, unavailable or bad_request."""
        self.logins.labels(outcome).inc()

    def throttled(self, endpoint: str) -> None:
        self.throttled_requests.labels(endpoint).inc()

    def request_observed(self, route: str, method: str, status: int, seconds: float) -> None:
        child = self._observed.get((route, method, status))
        if child is None:
            if len(self._observed) > 1000:
                self._observed.clear()
            label = method if method in _METHODS else "other"
            child = self._observed[route, method, status] = self.request_seconds.labels(route, label, str(status))
        child.observe(seconds)

    def store_error(self, operation: str) -> None:
        self.store_errors.labels(operation).inc()

    def redis_error(self, operation: str) -> None:
        self.redis_errors.labels(operation).inc()

    def backchannel_logout(self, outcome: str) -> None:
        """``outcome``: accepted, refused (400), unavailable (503) or failed (500, a bug)."""
        self.backchannel_logouts.labels(outcome).inc()

    def jwks_fetch(self, outcome: str) -> None:
        """``outcome``: ok, error or cached (for the OIDC identity source)."""
        self.jwks_fetches.labels(outcome).inc()

    def connection_dropped(self, reason: str) -> None:
        self.connections_dropped.labels(reason).inc()

    def request_shed(self, path: str) -> None:
        """``path``: /auth or /token (the only paths admission control refuses)."""
        child = self._shed.get(path)
        if child is None:
            child = self._shed[path] = self.requests_shed.labels(path)
        child.inc()

    # Exposition.
    def render(self) -> tuple[bytes, str]:
        """The text exposition format (every process's values in multiprocess mode), and its media type."""
        if self._registry is not None:
            return generate_latest(self._registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def process_exited(self, pid: int | None = None) -> None:
        """Bookkeeping when a worker ends (live gauges only; counters of ended workers keep counting)."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(pid or os.getpid(), str(self.multiprocess_dir))  # type: ignore[no-untyped-call]


def _format(fmt: str | None) -> str:
    if fmt is None:
        return "default"
    return fmt if fmt in _FORMATS else "other"
