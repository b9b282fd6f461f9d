"""``SameOrigin``: the dashboard websocket takes only its own page's origin.

channels' ``AllowedHostsOriginValidator`` (kept in front of it: the host must be one of
``ALLOWED_HOSTS``, or a DNS-rebinding page whose Origin and Host agree would pass) compares host
names only, not ports: a page of any other web application on a node's host (a Grafana, a dev
server on :3000) could open the dashboard's websocket with a staff member's session cookie, which
the browser sends to every port of a host, and read every command, key and value. The page
connects to ``window.location.host``, so its Origin is the Host it asks for; a TLS proxy that
rewrites the Host is named in ``CSRF_TRUSTED_ORIGINS`` (``PAXOS_CSRF_TRUSTED_ORIGINS``), as for
the admin's own forms.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings

DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


class SameOrigin:
    """ASGI middleware: a websocket whose ``Origin`` is not the ``Host`` it connects to (nor a
    trusted origin) is refused (403 to the handshake)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers", ()))
        origin = headers.get(b"origin", b"").decode("latin-1").lower()
        host = headers.get(b"host", b"").decode("latin-1").lower()
        if origin and (_same_origin(origin, host) or origin in _trusted_origins()):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)


def _same_origin(origin: str, host: str) -> bool:
    parts = urlsplit(origin)
    default = DEFAULT_PORTS.get(parts.scheme)
    return bool(host) and _without_port(parts.netloc, default) == _without_port(host, default)


def _without_port(netloc: str, default: str | None) -> str:
    """``netloc`` without an explicit default port (``example.com:80`` is ``example.com``)."""
    if default is not None and netloc.endswith(f":{default}"):
        return netloc[: -len(default) - 1]
    return netloc


def _trusted_origins() -> set[str]:
    return {origin.lower().rstrip("/") for origin in settings.CSRF_TRUSTED_ORIGINS}
