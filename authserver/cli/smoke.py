"""``authserver smoke``: prove a deployment end to end with the real ably-python client.

Logs in, points ``auth_url`` at the service with the session cookie in ``auth_headers``, connects,
attaches, publishes and receives its own message, and stays connected across token renewals.
Prints one line per step and a clear reason when it fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, TextIO

from authserver.identity.sessions import COOKIE_NAME

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("authserver.smoke")

#: Ably sends AUTH (in-band renewal) this long before a token expires, and none to a token that lives
#: less (RTN22; ably-spec 8.1). Renewals therefore come every ``lifetime - AUTH_LEAD`` seconds.
AUTH_LEAD = 30.0
#: Time allowed on top of the renewal schedule (connecting, fetching tokens, publishing).
SLACK = 15.0


def renewal_plan(lifetime: float, renewals: int, timeout: float) -> str | None:
    """Why ``renewals`` in-band renewals of ``lifetime``-second tokens cannot be seen within ``timeout``; or None."""
    if lifetime <= AUTH_LEAD:
        return (
            f"the service issues {lifetime:.0f} s tokens; Ably renews a token in band (AUTH) {AUTH_LEAD:.0f} s before "
            f"it expires and sends nothing to shorter ones: they end in DISCONNECTED 40142 and a reconnect, and "
            f"ably-python 3.1 does not renew at the second such expiry (ably-spec 5.3). Use TOKEN_TTL of 35-40 s "
            f"for a quick smoke test (a renewal every TTL-{AUTH_LEAD:.0f} s)"
        )
    needed = renewals * (lifetime - AUTH_LEAD) + SLACK
    if needed > timeout:
        return (
            f"{lifetime:.0f} s tokens are renewed every {lifetime - AUTH_LEAD:.0f} s (AUTH {AUTH_LEAD:.0f} s before "
            f"expiry), so {renewals} renewals take about {needed:.0f} s, more than --timeout {timeout:.0f}; raise "
            f"--timeout, or use TOKEN_TTL of 35-40 s on a test deployment"
        )
    return None


class SmokeFailure(Exception):
    pass


def stuck_connected(realtime: Any, *, now_ms: float | None = None) -> str | None:
    """Why the client is stuck: CONNECTED with an expired token and no transport; or None.

    ably-python 3.1 ends there when its authUrl refuses the TCP connection (service down and no proxy in
    front): ``on_error_from_authorize`` reads ``.code`` on httpx's ``ConnectError`` and crashes after the
    transport is gone, so it never reconnects (README "Known client issues"; ably-spec 8.3).
    """
    state = str(getattr(realtime.connection.state, "value", realtime.connection.state))
    details = realtime.auth.token_details
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    if state != "connected" or details is None or not details.expires or details.expires > now_ms:
        return None
    transport = getattr(realtime.connection.connection_manager, "transport", None)
    if transport is not None and not getattr(transport, "is_disposed", False):
        return None
    return (
        f"ably-python reports CONNECTED, but its token expired {(now_ms - details.expires) / 1000:.0f} s ago and it "
        f"has no transport: its authUrl refused the connection (token service down, no proxy in front) and "
        f"ably-python 3.1 never reconnects after that (see docs/sandbox.md, known client issues). Put a proxy "
        f"answering 502 in front of the service, or fetch tokens in an auth_callback"
    )


def connect_with_port(self: Any) -> None:
    """ably-python's ``WebSocketTransport.connect`` with the port put back into the URL.

    ably-python 3.1.x builds ``ws://{host}?...`` and drops the configured port (ably/ably-python#567;
    the fix, PR #691, is unreleased). Only the URL changes, using the port the client already
    computes for its REST traffic, so one endpoint/port pair serves both.
    """
    from ably.http.httputils import HttpUtils
    from ably.transport.defaults import Defaults

    query = urllib.parse.urlencode(self.params)
    scheme = "wss" if self.options.tls else "ws"
    url = f"{scheme}://{self.host}:{Defaults.get_port(self.options)}/?{query}"
    self.ws_connect_task = asyncio.create_task(self.ws_connect(url, HttpUtils.default_headers()))
    self.ws_connect_task.add_done_callback(self.on_ws_connect_done)


#: ably-python releases known to drop the port (ably/ably-python#567). A later release is left alone:
#: if it still has the bug, the smoke test against a sandbox fails loudly instead of being patched blind.
PORTLESS_RELEASES = ("3.1.",)


def patch_ably_python_ws_port() -> None:
    """Apply :func:`connect_with_port` for this process, on the releases that need it. Only a
    non-default port (a sandbox) needs it."""
    import ably
    from ably.transport import websockettransport

    if str(getattr(ably, "lib_version", "")).startswith(PORTLESS_RELEASES):
        websockettransport.WebSocketTransport.connect = connect_with_port


def ably_python_options(client_options: dict[str, Any]) -> dict[str, Any]:
    """Map the service's ably-js client options (``/client-config``) to ably-python options."""
    options: dict[str, Any] = {}
    if "endpoint" in client_options:
        options["endpoint"] = client_options["endpoint"]
    if "port" in client_options:
        options["port"] = int(client_options["port"])
        patch_ably_python_ws_port()
    if client_options.get("tls") is False:
        options["tls"] = False
    return options


def login(base_url: str, username: str, password: str) -> tuple[str, dict[str, Any]]:
    """Log in; return the session cookie and the service's client configuration."""
    import httpx  # only when a smoke test runs (the other commands load no HTTP client)

    try:
        with httpx.Client(base_url=base_url, timeout=10) as http:
            response = http.post("/login", json={"username": username, "password": password})
            if response.status_code != 200:
                raise SmokeFailure(f"login failed: HTTP {response.status_code} {_message(response)}")
            cookie = response.cookies.get(COOKIE_NAME)
            if not cookie:
                raise SmokeFailure("login answered 200 but set no session cookie")
            config = http.get("/client-config").json()
    except httpx.HTTPError as exc:
        raise SmokeFailure(f"cannot reach {base_url}: {exc}") from None
    return cookie, config


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


async def _exchange(
    realtime: Any,
    chan: Any,
    received: asyncio.Queue[Any],
    states: list[str],
    tokens: set[str],
    renewals: int,
    deadline: float,
    timeout: float,
    lifetime: float,
) -> int:
    """Publish and receive once a second until ``renewals`` new tokens came, CONNECTED throughout;
    returns how many messages went round."""
    sent = 0
    while len(tokens) <= renewals:
        stuck = stuck_connected(realtime)
        if stuck is not None:
            raise SmokeFailure(stuck)
        if time.monotonic() > deadline:
            raise SmokeFailure(
                f"only {len(tokens) - 1} of {renewals} renewals within {timeout:.0f}s (Ably prompts a renewal "
                f"{AUTH_LEAD:.0f} s before expiry: every {lifetime - AUTH_LEAD:.0f} s for these tokens)"
            )
        sent += 1
        await chan.publish("smoke", f"ping-{sent}")
        message = await asyncio.wait_for(received.get(), 10)
        if message.data != f"ping-{sent}":
            raise SmokeFailure(f"expected ping-{sent}, received {message.data!r}")
        await asyncio.sleep(1)
        token = realtime.auth.token_details.token
        if token not in tokens:
            tokens.add(token)
            state = getattr(realtime.connection.state, "value", realtime.connection.state)
            print(f"token renewed ({len(tokens) - 1}); connection still {state}")
        left = [s for s in states if s not in ("connected", "update")]
        if any(s in ("disconnected", "suspended", "failed", "closed") for s in left):
            reason = realtime.connection.error_reason
            raise SmokeFailure(f"connection left CONNECTED: states {states}, reason {reason}")
    return sent


async def stay_connected(
    base_url: str,
    cookie: str | None,
    client_options: dict[str, Any],
    *,
    renewals: int,
    timeout: float,
    channel: str,
    auth_headers: dict[str, str] | None = None,
) -> int:
    """Connect, publish/receive, and wait for ``renewals`` token renewals without leaving CONNECTED.

    The client sends the session ``cookie``, or ``auth_headers`` (e.g. an upstream bearer token) instead.
    """
    from ably import AblyRealtime

    realtime = AblyRealtime(
        auth_url=base_url.rstrip("/") + "/auth",
        auth_headers=auth_headers if auth_headers is not None else {"Cookie": f"{COOKIE_NAME}={cookie}"},
        **ably_python_options(client_options),
    )
    deadline = time.monotonic() + timeout
    states: list[str] = []
    realtime.connection.on(lambda change: states.append(str(getattr(change.current, "value", change.current))))
    try:
        await asyncio.wait_for(realtime.connection.once_async("connected"), max(1.0, deadline - time.monotonic()))
        print(f"connected as clientId {realtime.auth.client_id}")
        received: asyncio.Queue[Any] = asyncio.Queue()
        chan = realtime.channels.get(channel)
        await chan.subscribe(received.put_nowait)
        details = realtime.auth.token_details
        lifetime = ((details.expires or 0) - (details.issued or 0)) / 1000
        problem = renewal_plan(lifetime, renewals, timeout)
        if problem is not None:
            raise SmokeFailure(problem)
        tokens = {details.token}
        sent = await _exchange(realtime, chan, received, states, tokens, renewals, deadline, timeout, lifetime)
        print(f"OK: {sent} messages round-tripped, {len(tokens) - 1} renewals, connection stayed connected")
        return 0
    except Exception as exc:
        stuck = stuck_connected(realtime)
        if stuck is not None:
            raise SmokeFailure(stuck) from exc
        if not isinstance(exc, TimeoutError):
            raise
        reason = realtime.connection.error_reason
        raise SmokeFailure(f"timed out; connection state {realtime.connection.state}, reason {reason}") from None
    finally:
        # NOTE: bounded: a client stuck CONNECTED without a transport may never see its CLOSED.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(realtime.close(), 5)


def run_smoke(base_url: str, username: str, password: str, *, renewals: int, timeout: float, channel: str) -> int:
    for noisy in ("ably", "httpx", "httpcore", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        cookie, config = login(base_url, username, password)
        print(f"logged in to {base_url} as {username}")
        return asyncio.run(
            stay_connected(
                base_url, cookie, config.get("clientOptions", {}), renewals=renewals, timeout=timeout, channel=channel
            )
        )
    except SmokeFailure as exc:
        print(f"SMOKE FAILED: {exc}")
        return 1
    except Exception as exc:
        print(f"SMOKE FAILED: {type(exc).__name__}: {exc}")
        return 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    smoke = sub.add_parser("smoke", help="log in and stay connected with the real ably client across renewals")
    smoke.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of the token service")
    smoke.add_argument("--username", default="smoke", help="account (or demo name) to log in as")
    smoke.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    smoke.add_argument("--renewals", type=int, default=3, help="token renewals to wait for (default 3)")
    smoke.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    smoke.add_argument("--channel", help="channel to publish on (default: a fresh chat:smoke-<random> channel)")


def run(args: argparse.Namespace, stdin: TextIO) -> int:
    from authserver.cli.common import read_password

    password = read_password(stdin, confirm=False) if args.password_stdin else "smoke-password"
    channel = args.channel or f"chat:smoke-{secrets.token_hex(4)}"  # nobody else publishes there
    return run_smoke(args.url, args.username, password, renewals=args.renewals, timeout=args.timeout, channel=channel)
