"""The address a request came from, seen through the reverse proxies the operator trusts.

Behind a TLS proxy every request's peer address is the proxy's, so the admin login's lockout
(django-axes) counted every browser's failures under one address, and anyone could lock
``admin`` out for everybody. ``PAXOS_TRUSTED_PROXIES`` names the proxies (addresses or
networks); for a request from one of them the client is the right-most ``X-Forwarded-For`` hop
that is not itself a trusted proxy, as nginx's ``real_ip_recursive`` reads it. The hops to its
left are the client's own text and are never believed. A request from any other address is its
peer address, whatever headers it sends.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(text: str, name: str = "PAXOS_TRUSTED_PROXIES") -> tuple[Network, ...]:
    """Comma-separated addresses or networks (``10.0.0.7,192.168.1.0/24,::1``)."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {item[:60]!r} is not an IP address or network; give the reverse "
                "proxies' addresses, comma separated (e.g. 10.0.0.7,192.168.1.0/24)"
            ) from None
    return tuple(networks)


def _trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(request: Any) -> str | None:
    """The request's client address (axes' ``AXES_CLIENT_IP_CALLABLE``)."""
    remote: str | None = request.META.get("REMOTE_ADDR")
    proxies: tuple[Network, ...] = getattr(settings, "PAXOS_TRUSTED_PROXIES", ())
    if not proxies or remote is None or not _trusted(remote, proxies):
        return remote
    client = remote
    for hop in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        hop = hop.strip()
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # not an address: the nearest trusted proxy is all that is known
        client = hop
        if not _trusted(hop, proxies):
            break
    return client
