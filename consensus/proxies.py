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


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address in an ``X-Forwarded-For`` hop or a peer address: a port may follow it
    (``1.2.3.4:5678``, ``[2001:db8::1]:443``, as some proxies write it), and an IPv4 address may
    come mapped into IPv6 (``::ffff:10.0.0.7``, from a dual-stack listener). None for anything
    else."""
    text = text.strip()
    if text.startswith("["):  # [IPv6] or [IPv6]:port
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4:port
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: tuple[Network, ...]
) -> bool:
    return any(ip in network for network in proxies)


def client_address(request: Any) -> str | None:
    """The request's client address (axes' ``AXES_CLIENT_IP_CALLABLE``)."""
    remote: str | None = request.META.get("REMOTE_ADDR")
    proxies: tuple[Network, ...] = getattr(settings, "PAXOS_TRUSTED_PROXIES", ())
    peer = _address(remote) if proxies and remote is not None else None
    if peer is None or not _trusted(peer, proxies):
        return remote
    client = peer
    for hop in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        ip = _address(hop)
        if ip is None:
            break  # not an address: the nearest trusted proxy is all that is known
        client = ip
        if not _trusted(ip, proxies):
            break
    return str(client)
