"""Who the client is behind a reverse proxy: ``X-Forwarded-For``/``X-Forwarded-Proto`` believed only
from ``AUTHSERVER_TRUSTED_PROXIES``.

The rule: when the peer (the TCP connection's address) is a trusted proxy, read X-Forwarded-For from
the right (each proxy appends the address it saw), skip addresses of trusted proxies, and take the
first one that is not trusted. Everything left of it was written by the client and is ignored, so a
client cannot choose its own address. With no trusted proxy configured the headers are ignored.

A trusted peer that sends no (usable) X-Forwarded-For leaves the client unknown: the request keeps
the proxy's address, so every such request shares the proxy's per-address limits (an aggregate per
proxy: the clients behind it cannot be told apart, and none of them escapes the limit), and the log
says once per proxy that it sends no usable address.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: How many proxies the log has said "no usable address" of, at most (then it stops saying it).
MAX_REPORTED_PROXIES = 1024

log = logging.getLogger("authserver.http")


def _address(text: str) -> IPAddress | None:
    """An address from an X-Forwarded-For item: ``1.2.3.4``, ``1.2.3.4:80``, ``::1`` or ``[::1]:80``."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def real_client(peer: str, forwarded_for: Sequence[str], networks: Sequence[IPNetwork]) -> tuple[str, bool]:
    """The client's address and whether it is known (False: a trusted proxy did not say).

    :param forwarded_for: every X-Forwarded-For header value, in order.
    """
    peer_address = _address(peer)
    if peer_address is None or not _trusted(peer_address, networks):
        return peer, True
    hops = [item for value in forwarded_for for item in value.split(",") if item.strip()]
    nearest = peer
    for item in reversed(hops):
        address = _address(item)
        if address is None:
            return nearest, False  # garbage where a proxy should have written an address
        if not _trusted(address, networks):
            return str(address), True
        nearest = str(address)
    if not hops:
        return peer, False
    return nearest, True  # every hop is a trusted proxy: the left-most is the client


#: The prefix length an IPv6 client is counted under: one subscriber is usually given a whole /64,
#: so counting each address apart would give one machine 2**64 separate login budgets.
IPV6_THROTTLE_PREFIX = 64


def throttle_address(scope: Scope) -> str:
    """The address the login throttle counts under: the client's (for IPv6, its /64 network, written
    ``2001:db8::/64``); when a trusted proxy did not say who the client is, the proxy's own, which all
    of its such requests share."""
    client = scope.get("client")
    if not client:
        return "unknown"
    address = _address(str(client[0]))
    if address is None:
        return str(client[0])
    if address.version == 6:
        if address.ipv4_mapped is not None:  # ::ffff:1.2.3.4 from a dual-stack socket is that IPv4 client
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network((address, IPV6_THROTTLE_PREFIX), strict=False))
    return str(address)


class ForwardedMiddleware:
    """Rewrites ``scope["client"]`` and ``scope["scheme"]`` from the forwarding headers of trusted proxies."""

    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[str] = ()) -> None:
        self.app = app
        self.networks = tuple(ipaddress.ip_network(net, strict=False) for net in trusted_proxies)
        self._reported: set[str] = set()  # proxies the log said "no usable address" of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.networks and scope.get("client"):
            self._rewrite(scope)
        await self.app(scope, receive, send)

    def _rewrite(self, scope: Scope) -> None:
        """In place (the scope is this request's own)."""
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        forwarded_for = [v.decode("latin-1") for n, v in headers if n == b"x-forwarded-for"]
        peer, port = scope["client"]
        address, known = real_client(peer, forwarded_for, self.networks)
        if not known:
            self._report(peer)
        if address != peer:
            scope["client"] = (address, 0)
        peer_address = _address(peer)
        if peer_address is not None and _trusted(peer_address, self.networks):
            protos = [v.decode("latin-1") for n, v in headers if n == b"x-forwarded-proto"]
            proto = protos[-1].split(",")[-1].strip().lower() if protos else ""
            if proto in ("http", "https"):
                scope["scheme"] = proto if scope["type"] == "http" else {"http": "ws", "https": "wss"}[proto]

    def _report(self, proxy: str) -> None:
        """Say once per proxy (and process) that it sends no usable client address (never what it sent)."""
        if proxy in self._reported or len(self._reported) >= MAX_REPORTED_PROXIES:
            return
        self._reported.add(proxy)
        log.warning(
            "trusted proxy %s sends no usable X-Forwarded-For: the clients behind it cannot be told apart,"
            " so its requests share its own address's limits (the login throttle's per-address limit is"
            " one limit for all of them); make it append the client's address",
            proxy,
        )
