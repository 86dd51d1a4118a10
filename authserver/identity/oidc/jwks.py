"""A provider's signing keys: discovery document and JWKS fetched with httpx, cached in memory.

- The first use fetches ``{issuer}/.well-known/openid-configuration`` and its ``jwks_uri``; the
  discovery document must name the configured issuer (OpenID Connect Discovery 1.0, 4.3).
- Keys older than ``max_age`` are refreshed in the background while the cached ones keep answering
  (retried every ``stale_retry`` seconds while the provider fails).
- An unknown ``kid`` triggers one re-fetch (the provider rotated), at most once per ``refetch_interval``
  seconds, so a flood of random kids cannot make the service hammer the provider.
- Every fetch is bounded by ``timeout``; a provider that is down or slow costs at most that, and keys
  already fetched keep working.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from authserver.core.issuers import UpstreamConfigError, UpstreamIssuer, check_url
from authserver.errors import UnavailableError
from authserver.identity.oidc.verifier import BearerRefused

log = logging.getLogger("authserver.oidc")
MAX_DOCUMENT_BYTES = 512 * 1024


class ProviderUnavailable(UnavailableError):
    """The provider's discovery document or keys could not be fetched, and none are cached."""


@dataclass(frozen=True, slots=True)
class KeySet:
    """Keys of one provider by ``kid``, and when they were fetched."""

    keys: dict[str, jwt.PyJWK]
    fetched_at: float
    jwks_uri: str

    def find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is not None:
            return self.keys.get(kid)
        return next(iter(self.keys.values())) if len(self.keys) == 1 else None


def parse_jwks(document: Any) -> dict[str, jwt.PyJWK]:
    """Signing keys of a JWKS document by kid (keys for encryption and keys PyJWT cannot use are skipped).

    :raises ValueError: no usable signing key.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("JWKS has no 'keys' list")
    usable = [k for k in document["keys"] if isinstance(k, dict) and k.get("use", "sig") == "sig"]
    try:
        keyset = jwt.PyJWKSet(usable)
    except jwt.PyJWKSetError as exc:
        raise ValueError(str(exc)) from None
    keys: dict[str, jwt.PyJWK] = {}
    for index, key in enumerate(keyset.keys):
        keys[key.key_id or f"#{index}"] = key
    return keys


class ProviderKeys:
    """The cached keys of one provider."""

    def __init__(
        self,
        upstream: UpstreamIssuer,
        http: httpx.AsyncClient,
        clock: Callable[[], float],
        *,
        max_age: float = 300.0,
        refetch_interval: float = 30.0,
        stale_retry: float = 5.0,
        timeout: float = 5.0,
        on_fetch: Callable[[str], None] | None = None,
    ) -> None:
        self.upstream = upstream
        self.http = http
        self.clock = clock
        self.max_age = max_age
        self.refetch_interval = refetch_interval
        #: How often stale keys are refreshed in the background while the provider keeps failing.
        self.stale_retry = stale_retry
        self.timeout = timeout
        self.current: KeySet | None = None
        #: How many times the keys were fetched (successfully or not): for tests and metrics.
        self.fetches = 0
        self.last_error: str | None = None
        #: Told the outcome of every fetch ("ok" or "error"): the service counts them in a metric.
        self.on_fetch = on_fetch  # each fetch of the keys, by outcome (the metrics)
        self._last_attempt = float("-inf")
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[KeySet | None] | None = None

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """The key ``kid`` names.

        :raises BearerRefused: an unknown kid, also after a (rate-limited) re-fetch.
        :raises ProviderUnavailable: no keys have ever been fetched and the provider cannot be reached.
        """
        keyset = self.current
        now = self.clock()
        if keyset is None:
            keyset = await self.refresh(force=False)
            if keyset is None:
                raise ProviderUnavailable(f"cannot fetch the signing keys of {self.upstream.issuer}; try again later")
        elif now - keyset.fetched_at >= self.max_age and now - self._last_attempt >= self.stale_retry:
            self._refresh_in_background()
        key = keyset.find(kid)
        if key is None and now - self._last_attempt >= self.refetch_interval:
            keyset = await self.refresh(force=False) or keyset
            key = keyset.find(kid)
        if key is None:
            shown = "no kid" if kid is None else "an unknown kid"
            raise BearerRefused(f"bearer token refused: {shown} (not a current key of {self.upstream.issuer})")
        return key

    def _refresh_in_background(self) -> None:
        if self._background is None or self._background.done():
            self._background = asyncio.get_running_loop().create_task(self.refresh(force=True))

    async def refresh(self, *, force: bool = True) -> KeySet | None:
        """Fetch discovery and keys once (callers arriving meanwhile share the result).

        :param force: fetch even within ``refetch_interval`` of the last attempt.
        :returns: the keys in use afterwards (the old ones if the fetch failed), or None.
        """
        started = self._last_attempt
        async with self._lock:
            if self._last_attempt != started:
                return self.current  # another caller fetched while this one waited
            # Rate limit: a failing provider is retried every few seconds until keys are first fetched.
            interval = self.refetch_interval if self.current is not None else min(self.refetch_interval, 2.0)
            if not force and self.clock() - self._last_attempt < interval:
                return self.current
            self._last_attempt = self.clock()
            self.fetches += 1
            try:
                self.current = await asyncio.wait_for(self._fetch(), self.timeout)
                self.last_error = None
            except (httpx.HTTPError, ValueError, UpstreamConfigError, TimeoutError) as exc:
                self.last_error = _describe(exc)
                log.warning("fetching the keys of %s failed: %s", self.upstream.issuer, self.last_error)
            if self.on_fetch is not None:
                self.on_fetch("ok" if self.last_error is None else "error")
            return self.current

    async def _fetch(self) -> KeySet:
        discovery = await self._get_json(self.upstream.discovery_url)
        if not isinstance(discovery, dict) or discovery.get("issuer") != self.upstream.issuer:
            raise ValueError("the discovery document names another issuer")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise ValueError("the discovery document has no jwks_uri")
        check_url(jwks_uri, "jwks_uri")
        keys = parse_jwks(await self._get_json(jwks_uri))
        return KeySet(keys, self.clock(), jwks_uri)

    async def _get_json(self, url: str) -> Any:
        response = await self.http.get(url, timeout=self.timeout, follow_redirects=False)
        response.raise_for_status()
        if len(response.content) > MAX_DOCUMENT_BYTES:
            raise ValueError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
        return response.json()

    async def close(self) -> None:
        if self._background is not None and not self._background.done():
            self._background.cancel()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code} from {exc.request.url}"
    if isinstance(exc, httpx.HTTPError):
        return f"{type(exc).__name__} ({exc})"
    return str(exc)[:200]
