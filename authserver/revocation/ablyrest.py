"""Calls to Ably's REST API through ably-python's ``AblyRest`` (it signs with the key, and on real Ably
handles hosts and fallbacks): ``revokeTokens`` (ably-python has no method for it, ably/ably-python#275,
so it goes through the generic ``AblyRest.request(method, path, version, params, body, headers)``) and
``/time``. ``ABLY_ENDPOINT`` points it at a sandbox, with the same endpoint/port options the page uses.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from authserver.core.keys import AblyKey

log = logging.getLogger("authserver.revocation")

#: The REST protocol version sent with ``request()`` (ably-python's own).
PROTOCOL_VERSION = "3"
Outcome = Literal["delivered", "retry", "refused"]


@dataclass(frozen=True)
class CallResult:
    """What Ably answered: ``status`` 0 when it could not be reached."""

    outcome: Outcome
    status: int
    code: int | None
    message: str


def client_options(endpoint: str | None) -> dict[str, Any]:
    """AblyRest options for ``ABLY_ENDPOINT`` (None: real Ably)."""
    if endpoint is None:
        return {}
    parts = urlsplit(endpoint)
    tls = parts.scheme == "https"
    options: dict[str, Any] = {"endpoint": parts.hostname, "tls": tls}
    options["tls_port" if tls else "port"] = parts.port or (443 if tls else 80)
    return options


def judge(status: int, code: int | None) -> Outcome:
    """2xx delivered; 429, 5xx and no answer retried; any other refusal (40121 revocation not enabled,
    40133 another key's tokens, 401 wrong key) will not change by retrying."""
    if 200 <= status < 300:
        return "delivered"
    if status in (0, 408, 429) or status >= 500:
        return "retry"
    return "refused"


def _error_of(body: object) -> tuple[int | None, str]:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, ""
    code = error.get("code")
    return (code if isinstance(code, int) else None), str(error.get("message", ""))


class AblyRestApi:
    """One ``AblyRest`` per key, made on first use, closed by :meth:`close`."""

    def __init__(self, endpoint: str | None, *, timeout: float = 6.0) -> None:
        # NOTE: two attempts of ``timeout`` (the host and one fallback) fit inside the outbox's claim
        # lease (authserver.revocation.outbox.CLAIM_LEASE_S).
        self.endpoint = endpoint
        self.timeout = timeout
        self._clients: dict[str, Any] = {}

    def _client(self, key: AblyKey) -> Any:
        client = self._clients.get(key.name)
        if client is None:
            from ably import AblyRest  # imported on first use: the CLI's other commands do not need it

            client = AblyRest(
                key=f"{key.name}:{key.secret}",
                use_binary_protocol=False,
                http_request_timeout=self.timeout,
                http_max_retry_count=1,
                **client_options(self.endpoint),
            )
            self._clients[key.name] = client
        return client

    async def revoke(self, key: AblyKey, body: dict[str, object]) -> CallResult:
        """``POST /keys/{keyName}/revokeTokens`` with ``body``, authenticated with ``key`` (basic auth)."""
        path = f"/keys/{quote(key.name, safe='')}/revokeTokens"
        client = self._client(key)
        try:
            if client.options.tls:
                response = await client.request("POST", path, PROTOCOL_VERSION, body=body)
                status = int(response.status_code)
                code, message = (response.error_code, response.error_message) if status >= 300 else (None, "")
            else:
                # ably-python refuses basic auth without TLS (RSC18, 40103), and revokeTokens takes only
                # the key: for a plain-http sandbox, the same HTTP layer with the header set here.
                basic = base64.b64encode(f"{key.name}:{key.secret}".encode()).decode("ascii")
                raw = await client.http.make_request(
                    "POST",
                    path,
                    version=PROTOCOL_VERSION,
                    body=body,
                    headers={"Authorization": f"Basic {basic}"},
                    skip_auth=True,
                    raise_on_error=False,
                )
                status = int(raw.status_code)
                code, message = _error_of(raw.to_native()) if status >= 300 else (None, "")
        except Exception as exc:
            return CallResult("retry", 0, getattr(exc, "code", None), type(exc).__name__)
        return CallResult(judge(status, code), status, code, str(message or "")[:200])

    async def time_ms(self, key: AblyKey) -> int:
        """Ably's clock (``GET /time``). :raises Exception: when Ably does not answer."""
        return int(await self._client(key).time())

    async def close(self) -> None:
        for client in self._clients.values():
            try:
                await client.close()
            except Exception:  # noqa: S110 - closing on shutdown: nothing left to do
                pass
        self._clients.clear()
