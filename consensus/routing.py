"""Websocket routes of the consensus app (peer links, live dashboard); the transport fills them."""

import logging
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import URLPattern, URLResolver, path, re_path

from consensus.api.stream import CLIENT_STREAM_PATH, client_stream
from consensus.dashboard.consumers import DASHBOARD_PATH, DashboardConsumer
from consensus.dashboard.origin import SameOrigin
from consensus.throttle import LogThrottle
from consensus.transport.consumers import PeerConsumer
from consensus.transport.peers import PEER_PATH

logger = logging.getLogger("consensus.routing")

UNKNOWN_PATH_CLOSE_CODE = 4404
"""The close code for a websocket path no route takes: "not found" in the private range, the only
codes besides 1000 that daphne (autobahn) lets an application close with."""
UNKNOWN_PATH_REPEAT = 60.0
"""Seconds between two INFO lines about one host's websockets to unknown paths (the ones in
between go to DEBUG): a client retrying in a loop would otherwise write a line per attempt."""
_unknown_path_reports = LogThrottle(UNKNOWN_PATH_REPEAT)
"""Keyed by host alone (not port: every attempt comes from a new one; not path: a scanner's
paths would each be new)."""


async def unknown_path(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A websocket no route takes: accepted, then closed with ``UNKNOWN_PATH_CLOSE_CODE``.
    Channels' router raises for an unmatched path, which daphne answers with HTTP 500 and a
    traceback in the log per attempt; closing before the accept would say 403 (daphne's only
    refusal), which reads as "not allowed" rather than "not here"."""
    if (await receive())["type"] != "websocket.connect":
        return
    _log_unknown_path(scope)
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": UNKNOWN_PATH_CLOSE_CODE})
    while (await receive())["type"] != "websocket.disconnect":
        pass


def _log_unknown_path(scope: dict[str, Any]) -> None:
    """INFO the first time a host asks for an unknown path, DEBUG for its repeats within
    ``UNKNOWN_PATH_REPEAT`` seconds (``LogThrottle``, as refused peer links)."""
    client = scope.get("client")
    first = _unknown_path_reports.first(client[0] if client else None)
    (logger.info if first else logger.debug)(
        "websocket to unknown path %.100r from %s%s",
        scope["path"],
        client,
        f" (repeats within {UNKNOWN_PATH_REPEAT:g}s at DEBUG)" if first else "",
    )


websocket_urlpatterns: list[URLPattern | URLResolver] = [
    # Peer links (consensus.transport): HMAC-authenticated, binary msgpack frames.
    path(PEER_PATH, PeerConsumer.as_asgi(), name="paxos-peer"),
    # Pipelined clients (consensus.api.stream): bearer token, JSON frames of many requests.
    path(CLIENT_STREAM_PATH, client_stream, name="paxos-client-stream"),
    # Live dashboard (consensus.dashboard): browsers with a staff session. Unlike peers, browsers
    # send an Origin, so a page on another site, or on another port of this host, cannot ride
    # the session cookie (CSWSH).
    path(
        DASHBOARD_PATH,
        AllowedHostsOriginValidator(SameOrigin(AuthMiddlewareStack(DashboardConsumer.as_asgi()))),
        name="paxos-dashboard",
    ),
    # Last: any other path (otherwise channels' router raises, and daphne answers HTTP 500).
    re_path(r"", unknown_path, name="paxos-unknown-websocket"),
]
